"""Reporter data encrypted at rest; keyed pseudonyms of channel user ids

Converts a deployed database in place, in the one transaction of the upgrade:

- conversations: `user_key` (pseudonym) added and made the lookup key; `user_ref` and `draft` encrypted;
- cases: `reporter_key` (pseudonym) added; `reporter_ref`, `description`, `reporter_name`,
  `reporter_phone` encrypted;
- trace_events.body, outbox.payload and outbox.recipient (deterministically) encrypted;
- status_guesses.user_ref replaced by the pseudonym `user_key`; processed update keys hashed.

The keys come from the installed key ring (`qinglian db upgrade` and `qinglian serve` install it from
the settings). Column types widen to TEXT on PostgreSQL; SQLite does not enforce lengths, and its
tables are not rebuilt, because rebuilding a table that others reference would cascade deletes through
the foreign keys. So on SQLite the old UNIQUE (channel, user_ref) of conversations stays in the table
definition (harmless: encrypted values never repeat) next to the new unique index.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from storage.migrations.rewrite import BATCH
from storage.migrations.rewrite import decrypt as _decrypt
from storage.migrations.rewrite import encrypt as _encrypt
from storage.migrations.rewrite import narrow as _narrow
from storage.migrations.rewrite import postgres as _postgres
from storage.migrations.rewrite import rewrite as _rewrite
from storage.migrations.rewrite import ring as _ring
from storage.migrations.rewrite import widen as _widen

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ERASED = "erased"


def _add_key_column(table: str, column: str) -> None:
    """A pseudonym column, NOT NULL once filled (SQLite can only add it with a default)."""
    if _postgres():
        op.add_column(table, sa.Column(column, sa.String(length=64), nullable=True))
    else:
        op.add_column(table, sa.Column(column, sa.String(length=64), nullable=False, server_default=""))


def upgrade() -> None:
    # conversations
    _add_key_column("conversations", "user_key")
    _widen("conversations", "user_ref", sa.String(length=128), False)
    _widen("conversations", "draft", sa.JSON(), False, "draft::text")
    if _postgres():
        op.drop_constraint("uq_conversation_user", "conversations", type_="unique")

    def conversation(row: sa.Row[Any]) -> dict[str, Any]:
        return {"user_key": _ring().pseudonym(row.channel, row.user_ref),
                "user_ref": _encrypt(row.user_ref, "conversations.user_ref"),
                "draft": _encrypt(row.draft if row.draft is not None else "{}", "conversations.draft")}

    _rewrite("conversations", ("channel", "user_ref", "draft"), conversation, ("user_key",))
    if _postgres():
        op.alter_column("conversations", "user_key", existing_type=sa.String(length=64), nullable=False)
        op.create_unique_constraint("uq_conversation_user_key", "conversations", ["channel", "user_key"])
    else:
        op.create_index("uq_conversation_user_key", "conversations", ["channel", "user_key"], unique=True)

    # cases
    _add_key_column("cases", "reporter_key")
    _widen("cases", "reporter_ref", sa.String(length=128), False)
    _widen("cases", "reporter_name", sa.String(length=80), True)
    _widen("cases", "reporter_phone", sa.String(length=20), True)

    def case(row: sa.Row[Any]) -> dict[str, Any]:
        return {"reporter_key": ERASED if row.reporter_ref == ERASED else _ring().pseudonym(row.channel,
                                                                                              row.reporter_ref),
                "reporter_ref": _encrypt(row.reporter_ref, "cases.reporter_ref"),
                "description": _encrypt(row.description, "cases.description"),
                "reporter_name": _encrypt(row.reporter_name, "cases.reporter_name"),
                "reporter_phone": _encrypt(row.reporter_phone, "cases.reporter_phone")}

    _rewrite("cases", ("channel", "reporter_ref", "description", "reporter_name", "reporter_phone"), case,
             ("reporter_key",))
    if _postgres():
        op.alter_column("cases", "reporter_key", existing_type=sa.String(length=64), nullable=False)
    op.create_index("ix_cases_reporter_key", "cases", ["channel", "reporter_key", "created_at"])

    # trace events and the outbox
    _rewrite("trace_events", ("body",), lambda row: {"body": _encrypt(row.body, "trace_events.body")})
    _widen("outbox", "recipient", sa.String(length=128), False)
    _widen("outbox", "payload", sa.JSON(), False, "payload::text")
    _rewrite("outbox", ("recipient", "payload"),
             lambda row: {"recipient": _encrypt(row.recipient, "outbox.recipient", deterministic=True),
                          "payload": _encrypt(row.payload, "outbox.payload")})

    # wrong receipt codes by pseudonym
    op.execute("ALTER TABLE status_guesses RENAME COLUMN user_ref TO user_key")
    _rewrite("status_guesses", ("channel", "user_key"),
             lambda row: {"user_key": _ring().pseudonym(row.channel, row.user_key)})

    # processed update keys: a WeChat event's key holds the openid
    updates = sa.table("processed_updates", sa.column("channel", sa.String), sa.column("update_key", sa.String))
    connection = op.get_bind()
    keys = [(row.channel, row.update_key) for row in connection.execute(sa.select(updates.c.channel,
                                                                                  updates.c.update_key))]
    statement = (sa.update(updates)
                 .where(updates.c.channel == sa.bindparam("old_channel"), updates.c.update_key == sa.bindparam("old"))
                 .values(update_key=sa.bindparam("new")))
    for start in range(0, len(keys), BATCH):
        connection.execute(statement, [{"old_channel": channel, "old": key,
                                        "new": _ring().pseudonym("update", key)}
                                       for channel, key in keys[start:start + BATCH]])


def downgrade() -> None:
    """Back to plaintext, with the keys that encrypted the data; pseudonyms cannot be reversed, so the
    short-lived wrong-code and processed-update records are dropped."""
    op.execute("DELETE FROM processed_updates")
    op.execute("DELETE FROM status_guesses")
    op.execute("ALTER TABLE status_guesses RENAME COLUMN user_key TO user_ref")

    _rewrite("outbox", ("recipient", "payload"),
             lambda row: {"recipient": _decrypt(row.recipient, "outbox.recipient"),
                          "payload": _decrypt(row.payload, "outbox.payload")})
    _narrow("outbox", "recipient", sa.String(length=128), False)
    _narrow("outbox", "payload", sa.JSON(), False, "payload::json")
    _rewrite("trace_events", ("body",), lambda row: {"body": _decrypt(row.body, "trace_events.body")})

    _rewrite("cases", ("reporter_ref", "description", "reporter_name", "reporter_phone"),
             lambda row: {name: _decrypt(getattr(row, name), f"cases.{name}")
                          for name in ("reporter_ref", "description", "reporter_name", "reporter_phone")})
    op.drop_index("ix_cases_reporter_key", "cases")
    op.drop_column("cases", "reporter_key")
    _narrow("cases", "reporter_ref", sa.String(length=128), False)
    _narrow("cases", "reporter_name", sa.String(length=80), True)
    _narrow("cases", "reporter_phone", sa.String(length=20), True)

    _rewrite("conversations", ("user_ref", "draft"),
             lambda row: {"user_ref": _decrypt(row.user_ref, "conversations.user_ref"),
                          "draft": _decrypt(row.draft, "conversations.draft")})
    if _postgres():
        op.drop_constraint("uq_conversation_user_key", "conversations", type_="unique")
    else:
        op.drop_index("uq_conversation_user_key", "conversations")
    op.drop_column("conversations", "user_key")
    _narrow("conversations", "user_ref", sa.String(length=128), False)
    _narrow("conversations", "draft", sa.JSON(), False, "draft::json")
    if _postgres():
        op.create_unique_constraint("uq_conversation_user", "conversations", ["channel", "user_ref"])
