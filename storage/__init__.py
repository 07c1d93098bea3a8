"""Models, engine, actions, migrations, backup and field encryption of Qinglian's database."""
