"""The closed loop: residents' consents to WeChat subscription notices and one-time subscription messages;
each message's kind for its delivery state; counts of re-handling, appeals, transfers and extensions;
extension requests

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 23:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('notice_consents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('user_key', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('template_id', sa.String(length=128), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=True),
    sa.Column('scene', sa.Integer(), nullable=True),
    sa.Column('long_term', sa.Boolean(), nullable=False),
    sa.Column('remaining', sa.Integer(), nullable=False),
    sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_notice_consents_user', 'notice_consents', ['channel', 'user_key', 'template_id'])
    op.create_index(op.f('ix_notice_consents_case_id'), 'notice_consents', ['case_id'])
    op.create_index('ix_outbox_case', 'outbox', ['case_id'])
    for column in ("rehandle_count", "appeal_count", "transfer_count", "extension_count"):
        op.add_column('cases', sa.Column(column, sa.Integer(), nullable=False, server_default='0'))
    op.add_column('cases', sa.Column('appeal_pending', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column('cases', sa.Column('warned_for', sa.String(length=60), nullable=True))
    op.add_column('cases', sa.Column('escalated_for', sa.String(length=60), nullable=True))
    op.create_table('extension_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('resolve_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['staff_users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['staff_users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_extension_requests_case_id'), 'extension_requests', ['case_id'])
    op.add_column('outbox', sa.Column('kind', sa.String(length=20), nullable=False, server_default='reply'))
    op.execute("UPDATE outbox SET kind = 'notice' WHERE case_id IS NOT NULL")


def downgrade() -> None:
    op.drop_index(op.f('ix_extension_requests_case_id'), table_name='extension_requests')
    op.drop_table('extension_requests')
    for column in ("rehandle_count", "appeal_count", "transfer_count", "extension_count", "appeal_pending",
                   "warned_for", "escalated_for"):
        op.execute(f"ALTER TABLE cases DROP COLUMN {column}")  # not batch mode: no table rebuild on SQLite
    op.execute("ALTER TABLE outbox DROP COLUMN kind")
    op.drop_index('ix_outbox_case', table_name='outbox')
    op.drop_index(op.f('ix_notice_consents_case_id'), table_name='notice_consents')
    op.drop_index('ix_notice_consents_user', table_name='notice_consents')
    op.drop_table('notice_consents')
