"""background jobs: the state of work run outside a request (bulk evidence exports)

- background_jobs: kind, JSON params, status (queued, running, done, failed), progress,
  result file (name, bytes, SHA-256), who asked, times (created, started, heartbeat,
  finished), attempts, the claim token of the running attempt (worker) and the last
  error; indexes on (status, heartbeat_at) for the workers' sweep and on
  (requested_by, created_at) for "my recent jobs".

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 09:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'background_jobs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=64), nullable=False),
        sa.Column('params', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('progress_done', sa.Integer(), nullable=False),
        sa.Column('progress_total', sa.Integer(), nullable=False),
        sa.Column('message', sa.String(length=255), nullable=True),
        sa.Column('result_path', sa.String(length=512), nullable=True),
        sa.Column('result_bytes', sa.BigInteger(), nullable=True),
        sa.Column('result_sha256', sa.String(length=64), nullable=True),
        sa.Column('requested_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('worker', sa.String(length=128), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')",
                           name=op.f('ck_background_jobs_status')),
        sa.ForeignKeyConstraint(['requested_by'], ['users.id'],
                                name=op.f('fk_background_jobs_requested_by_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_background_jobs')),
    )
    op.create_index('ix_background_jobs_status', 'background_jobs',
                    ['status', 'heartbeat_at'], unique=False)
    op.create_index('ix_background_jobs_requested_by', 'background_jobs',
                    ['requested_by', 'created_at'], unique=False)


def downgrade():
    op.drop_index('ix_background_jobs_requested_by', table_name='background_jobs')
    op.drop_index('ix_background_jobs_status', table_name='background_jobs')
    op.drop_table('background_jobs')
