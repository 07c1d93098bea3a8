"""Consistent, database-agnostic backups: `qinglian db backup` and `qinglian db restore`.

An archive (a gzip-compressed tar stream, any file name) holds, in this order,

- `format.json` — `{"format": "qinglian-backup", "format_version": 2}`, so a reader knows the layout
  from the first member;
- `tables/<table>/<part>.jsonl` — every row of every table as one JSON object per line, tables in the
  order of their foreign keys (parents first, as a restore inserts them), rows in primary-key order, cut
  into parts of about `PART_BYTES` (a part ends with the row that reaches it; numbered from 000000; a
  table without rows has none),
  read inside one snapshot transaction (PostgreSQL: REPEATABLE READ, READ ONLY; SQLite: one deferred read
  transaction, which WAL mode turns into a snapshot), so a backup taken while the service runs is consistent;
- `files/evidence/…` and `files/models/…` — the data directory's evidence files and classifier models,
  byte for byte as stored;
- `checksums/<n>.jsonl` — after every `CHECKSUM_BATCH` members and once at the end: one line
  `{"name", "size", "sha256"}` for each table part and file written since the previous checksums member;
- `manifest.json` — last: format version, creation time, the Alembic schema revision, the source dialect,
  row counts, file and member counts and the sha256 of every checksums member.

Everything is written and read as a stream: rows are fetched per table in batches of `FETCH_ROWS` through
a server-side cursor, files are copied in chunks, a restore reads the archive member by member and inserts
in batches of `INSERT_ROWS`. Memory stays the same whatever the size of the database and of the evidence.

A restore reads the archive twice: first to check every member against its checksum, the row counts and
the manifest, and that the configured keys read it (one encrypted value per key id is decrypted, the key ids of
the evidence and model files must be in the key ring, and the pseudonym key must give a conversation's and a
case's pseudonym); nothing is written before this pass succeeds, so a corrupt or truncated archive, or one
under other keys, leaves the target untouched. Then it reads it again to restore, inserting every row in one
transaction.

Format version 1 (one `tables/<table>.jsonl` member per table, no `format.json` and no checksums
members; the manifest lists the sha256 of every member) is still read and restored.

Values are stored by column type, not by backend: datetimes as ISO 8601 with their UTC offset, JSON
columns as JSON, booleans as booleans, bytes as base64. So a backup taken from SQLite restores into
PostgreSQL and the other way round.

Encrypted fields (storage/crypto.py) are copied as they are stored, ciphertext and pseudonyms, never
decrypted, and so are evidence files (AES-GCM per file, storage/evidence_files.py): a backup holds no more
plaintext than the database and the data directory. The keys are not in the archive: receipt
codes, encrypted fields and evidence files of the restored data only work with the same
`QINGLIAN_SECRET_KEY` (or the same `<data_dir>/secret.key`) and the encryption keys of the backup's time
(`QINGLIAN_ENCRYPTION_KEY`, `QINGLIAN_ENCRYPTION_OLD_KEYS`, `QINGLIAN_PSEUDONYM_KEY`). A backup from before
encryption (schema 0002 or older) is restored as it was and then encrypted by the migration to the newest
schema.

The package holds one concern per module: `format` (member names, format constants, values by column type,
hashing reader), `database` (the snapshot engine, the tables present, the schema revision), `write` (the
snapshot of the tables and the archive writer: `create_backup`), `read` (walking and verifying an archive:
`read_archive`), `keys` (whether the configured keys read an archive: `KeyCheck`) and `restore`
(`restore_backup`). The tunable sizes live in the module that reads them:
`FETCH_ROWS`, `PART_BYTES` and `CHECKSUM_BATCH` in `write`, `INSERT_ROWS` in `restore`, `COPY_CHUNK` in
`format`.
"""

from storage.backup.format import BackupError
from storage.backup.read import Archive, read_archive
from storage.backup.restore import RestoreSummary, restore_backup
from storage.backup.write import BackupSummary, create_backup

__all__ = [
    "Archive",
    "BackupError",
    "BackupSummary",
    "RestoreSummary",
    "create_backup",
    "read_archive",
    "restore_backup",
]
