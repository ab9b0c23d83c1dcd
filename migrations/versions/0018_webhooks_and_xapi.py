"""outbound webhooks and xAPI statements, fed from the ledger by an outbox

- integration_cursors: per outbound consumer ("webhooks", "xapi") the last ledger seq
  it has turned into deliveries;
- webhook_endpoints: name, URL, the signing secret encrypted with the app's Fernet key
  (and its first characters for lists), subscribed event types (JSON list), active
  flag, the ledger seq of its creation (it receives later events only);
- webhook_deliveries: one event for one endpoint, unique (endpoint_id, ledger_seq), the
  exact body sent, status pending|delivered|failed, attempts and back-off, the lease of
  the tick sending it, the last HTTP status and error; (status, next_attempt_at) finds
  what is due;
- xapi_statements: one statement per ledger entry (ledger_seq and statement id
  unique), the exact JSON sent, status pending|sent|failed, attempts and back-off.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 05:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'integration_cursors',
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('last_seq', sa.Integer(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_integration_cursors')),
    )
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('secret_cipher', sa.LargeBinary(), nullable=False),
        sa.Column('secret_prefix', sa.String(length=16), nullable=False),
        sa.Column('events', sa.Text(), nullable=False),
        sa.Column('is_active', sa.Boolean(), nullable=False),
        sa.Column('created_seq', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('deactivated_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('deactivated_by', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['created_by'], ['users.id'],
                                name=op.f('fk_webhook_endpoints_created_by_users'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['deactivated_by'], ['users.id'],
                                name=op.f('fk_webhook_endpoints_deactivated_by_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('ledger_seq', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.String(length=36), nullable=False),
        sa.Column('event_type', sa.String(length=64), nullable=False),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')",
                           name=op.f('ck_webhook_deliveries_status')),
        sa.CheckConstraint('attempts >= 0', name=op.f('ck_webhook_deliveries_attempts')),
        sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'],
                                name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
        sa.UniqueConstraint('endpoint_id', 'ledger_seq',
                            name=op.f('uq_webhook_deliveries_endpoint_id_ledger_seq')),
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries',
                    ['status', 'next_attempt_at'], unique=False)
    op.create_table(
        'xapi_statements',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ledger_seq', sa.Integer(), nullable=False),
        sa.Column('statement_id', sa.String(length=36), nullable=False),
        sa.Column('verb', sa.String(length=16), nullable=False),
        sa.Column('statement', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.String(length=500), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')",
                           name=op.f('ck_xapi_statements_status')),
        sa.CheckConstraint('attempts >= 0', name=op.f('ck_xapi_statements_attempts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_xapi_statements')),
        sa.UniqueConstraint('ledger_seq', name=op.f('uq_xapi_statements_ledger_seq')),
        sa.UniqueConstraint('statement_id', name=op.f('uq_xapi_statements_statement_id')),
    )
    op.create_index('ix_xapi_statements_due', 'xapi_statements',
                    ['status', 'next_attempt_at'], unique=False)


def downgrade():
    op.drop_index('ix_xapi_statements_due', table_name='xapi_statements')
    op.drop_table('xapi_statements')
    op.drop_index('ix_webhook_deliveries_due', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_endpoints')
    op.drop_table('integration_cursors')
