"""Similar cases, problems and reply quality (issue 15): each case's keyed similarity signature with its band
and place keys, problems that group cases, the scores of staff answers, and the hot issues' refreshes

Revision ID: 0030
Revises: 0010
Create Date: 2026-12-04 22:00:00.000000
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0030'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('case_signatures',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('minhash', sa.LargeBinary(), nullable=False),
    sa.Column('terms', sa.LargeBinary(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('case_id')
    )
    for table, column in (('similarity_bands', 'band_key'), ('similarity_places', 'place_key')):
        op.create_table(table,
        sa.Column(column, sa.BigInteger(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint(column, 'case_id')
        )
        op.create_index(f'ix_{table}_case', table, ['case_id'])
    op.create_table('problems',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.Text(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('answered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cases') as batch:
        batch.add_column(sa.Column('problem_id', sa.Integer(), nullable=True))
        batch.create_foreign_key('fk_cases_problem_id', 'problems', ['problem_id'], ['id'], ondelete='SET NULL')
        batch.create_index(batch.f('ix_cases_problem_id'), ['problem_id'])
    op.create_table('reply_scores',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('trace_event_id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('queue', sa.String(length=60), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('relevance', sa.Float(), nullable=False),
    sa.Column('completeness', sa.Float(), nullable=False),
    sa.Column('clarity', sa.Float(), nullable=False),
    sa.Column('timeliness', sa.Float(), nullable=True),
    sa.Column('reasons', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['trace_event_id'], ['trace_events.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('trace_event_id')
    )
    op.create_index(op.f('ix_reply_scores_case_id'), 'reply_scores', ['case_id'])
    op.create_index(op.f('ix_reply_scores_created_at'), 'reply_scores', ['created_at'])
    op.create_table('hot_issue_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cases', sa.Integer(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.Column('groups', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_hot_issue_runs_computed_at'), 'hot_issue_runs', ['computed_at'])


def downgrade() -> None:
    op.drop_table('hot_issue_runs')
    op.drop_table('reply_scores')
    with op.batch_alter_table('cases') as batch:
        batch.drop_index(batch.f('ix_cases_problem_id'))
        batch.drop_constraint('fk_cases_problem_id', type_='foreignkey')
        batch.drop_column('problem_id')
    op.drop_table('problems')
    op.drop_table('similarity_places')
    op.drop_table('similarity_bands')
    op.drop_table('case_signatures')
