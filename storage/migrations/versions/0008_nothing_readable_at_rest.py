"""Nothing a resident wrote stays readable at rest: a case's place, time and key words, staff notes,
audit details (move reasons), evidence file names are encrypted; a search index of keyed hashes
replaces searching the place in SQL

Converts a deployed database in place with the application's key ring. The search index is filled by
the running service's housekeeping (it needs the tokenizer, which the storage layer does not import):
every case starts with `search_version` NULL. Evidence files are encrypted by `qinglian keys rotate`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 22:00:00.000000
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from storage.migrations.rewrite import decrypt, encrypt, narrow, rewrite, widen

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (  # table, column, type before, nullable, PostgreSQL cast of a JSON column to text and back
    ("cases", "place", sa.Text(), False, None),
    ("cases", "occurred", sa.String(length=200), False, None),
    ("cases", "label_terms", sa.JSON(), True, "json"),
    ("internal_notes", "body", sa.Text(), False, None),
    ("audit_log", "detail", sa.JSON(), False, "json"),
    ("attachments", "original_name", sa.String(length=255), True, None),
)


def _as_text(value: Any) -> str | None:
    """A JSON column's value as stored text (SQLite hands back text, PostgreSQL the decoded value)."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _converter(table: str, column: str, *, encrypting: bool) -> Callable[[sa.Row[Any]], dict[str, Any]]:
    purpose = f"{table}.{column}"

    def convert(row: sa.Row[Any]) -> dict[str, Any]:
        value = getattr(row, column)
        return {column: encrypt(_as_text(value), purpose) if encrypting else decrypt(value, purpose)}

    return convert


def upgrade() -> None:
    op.create_table('case_terms',
    sa.Column('term', sa.BigInteger(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('term', 'case_id')
    )
    op.create_index('ix_case_terms_case', 'case_terms', ['case_id'], unique=False)
    op.add_column('cases', sa.Column('search_version', sa.Integer(), nullable=True))
    for table, column, before, nullable, cast in COLUMNS:
        widen(table, column, before, nullable, f"{column}::text" if cast else None)
        rewrite(table, (column,), _converter(table, column, encrypting=True))


def downgrade() -> None:
    for table, column, before, nullable, cast in COLUMNS:
        rewrite(table, (column,), _converter(table, column, encrypting=False))
        narrow(table, column, before, nullable, f"{column}::{cast}" if cast else None)
    # Not in batch mode: rebuilding `cases` on SQLite would cascade-delete the rows that reference it.
    op.execute("ALTER TABLE cases DROP COLUMN search_version")
    op.drop_index('ix_case_terms_case', table_name='case_terms')
    op.drop_table('case_terms')
