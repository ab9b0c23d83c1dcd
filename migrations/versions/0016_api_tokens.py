"""API bearer tokens and the API call log

- api_tokens: name, display prefix, SHA-256 of the secret (unique), scopes (JSON list),
  optional expiry, revocation (never deleted: the call log keeps pointing at it);
- api_calls: one row per /api/v1 request (token, method, path, status, error code,
  duration, IP); (token_id, at) serves the per-token rate limit, (at) the log page.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 03:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('prefix', sa.String(length=12), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('scopes', sa.Text(), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_by', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'],
                                name=op.f('fk_api_tokens_created_by_users'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['revoked_by'], ['users.id'],
                                name=op.f('fk_api_tokens_revoked_by_users'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    )
    op.create_table(
        'api_calls',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=True),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('method', sa.String(length=8), nullable=False),
        sa.Column('path', sa.String(length=255), nullable=False),
        sa.Column('status', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(length=64), nullable=True),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column('ip', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'],
                                name=op.f('fk_api_calls_token_id_api_tokens'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_calls')),
    )
    op.create_index('ix_api_calls_token_at', 'api_calls', ['token_id', 'at'], unique=False)
    op.create_index('ix_api_calls_at', 'api_calls', ['at'], unique=False)


def downgrade():
    op.drop_index('ix_api_calls_at', table_name='api_calls')
    op.drop_index('ix_api_calls_token_at', table_name='api_calls')
    op.drop_table('api_calls')
    op.drop_table('api_tokens')
