"""Models, engine, actions, migrations, backup and field encryption of Qinglian's database."""

# Every table must be on `storage.models.Base.metadata` whenever any storage module is loaded (backup and
# restore walk it); the per-address limit events live in their own module.
from storage import client_limits as _client_limits  # noqa: F401
