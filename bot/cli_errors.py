"""The one line a command prints when the database cannot be opened, or is not at the schema the command needs,
shared by every `qinglian` command."""

from __future__ import annotations

from typing import NoReturn

import typer

from storage.db import DATABASE_UNAVAILABLE, masked_url

__all__ = ["DATABASE_UNAVAILABLE", "cannot_open_database", "require_schema"]


def cannot_open_database(database_url: str, problem: BaseException, consequence: str = "") -> NoReturn:
    """Exit 2 with "cannot open the database at <url, password masked>: <first line of the reason>", and what it
    means for what the command did (`consequence`), if anything."""
    reason = str(getattr(problem, "orig", None) or problem).splitlines()
    typer.echo(f"qinglian: cannot open the database at {masked_url(database_url)}: "
               f"{reason[0] if reason else problem.__class__.__name__}" + (f" ({consequence})" if consequence else ""),
               err=True)
    raise typer.Exit(2) from None


def require_schema(database_url: str, *, any_revision: bool = False, hint: str = "") -> None:
    """Exit 2 with one line saying where the database stands when it is not at the newest schema: not created, with
    no schema (`qinglian db upgrade` not run, or QINGLIAN_DATABASE_URL naming another database), behind (the code was
    upgraded, the database not yet) or newer than this version. Without it, a command on such a database failed on
    its first statement with "cannot open the database …: relation … does not exist". `any_revision`: a schema of
    any revision will do (a backup), only none at all will not. `hint` is added to the line."""
    from storage.migrate import DatabaseUnreachable, schema_state, status_sentence

    try:
        recorded, newest, missing_file = schema_state(database_url)
    except DatabaseUnreachable as problem:
        typer.echo(f"qinglian: cannot open the database at {masked_url(database_url)}: {problem.reason}", err=True)
        raise typer.Exit(2) from None
    if recorded == newest or (any_revision and recorded):
        return
    typer.echo(f"qinglian: {masked_url(database_url)}: {status_sentence(recorded, newest, missing_file)}{hint}",
               err=True)
    raise typer.Exit(2)
