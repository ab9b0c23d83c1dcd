"""HR webhook receipts (replay protection of POST /api/v1/hr/webhook)

- hr_webhook_receipts: SHA-256 of each accepted signature (unique: a second copy of a
  call is refused), the signed X-Timestamp and when it arrived; (received_at) serves the
  housekeeping that deletes receipts older than a day.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 04:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'hr_webhook_receipts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('signature_sha256', sa.String(length=64), nullable=False),
        sa.Column('timestamp', sa.BigInteger(), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hr_webhook_receipts')),
        sa.UniqueConstraint('signature_sha256',
                            name=op.f('uq_hr_webhook_receipts_signature_sha256')),
    )
    op.create_index('ix_hr_webhook_receipts_received_at', 'hr_webhook_receipts',
                    ['received_at'], unique=False)


def downgrade():
    op.drop_index('ix_hr_webhook_receipts_received_at', table_name='hr_webhook_receipts')
    op.drop_table('hr_webhook_receipts')
