"""messages with delivery and read receipts; scheduler locks

Revision ID: 0010
Revises: 0009

``messages``: one notice to one user; UNIQUE (recipient_user_id, dedupe_key) makes
scheduled sending idempotent; a partial index of unread messages serves the nav badge.
``message_deliveries``: one row per message and channel (inbox, email) with the retry
state and the tick's lease. ``scheduler_locks``: named leases for ``lms tick``.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recipient_user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch", sa.String(length=32), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_via", sa.String(length=16), nullable=True),
        sa.Column("read_ip", sa.String(length=64), nullable=True),
        sa.Column("read_user_agent", sa.String(length=512), nullable=True),
        sa.CheckConstraint("read_via IS NULL OR read_via IN ('inbox', 'email_link')",
                           name=op.f("ck_messages_read_via")),
        sa.ForeignKeyConstraint(["recipient_user_id"], ["users.id"],
                                name=op.f("fk_messages_recipient_user_id_users"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("recipient_user_id", "dedupe_key",
                            name=op.f("uq_messages_recipient_user_id_dedupe_key")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_batch"), ["batch"], unique=False)
        batch_op.create_index("ix_messages_recipient_created",
                              ["recipient_user_id", "created_at"], unique=False)
        batch_op.create_index("ix_messages_unread", ["recipient_user_id"], unique=False,
                              sqlite_where=sa.text("read_at IS NULL"),
                              postgresql_where=sa.text("read_at IS NULL"))
    op.create_table(
        "message_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("smtp_message_id", sa.String(length=255), nullable=True),
        sa.CheckConstraint("channel IN ('inbox', 'email')",
                           name=op.f("ck_message_deliveries_channel")),
        sa.CheckConstraint("status IN ('pending', 'sent', 'failed')",
                           name=op.f("ck_message_deliveries_status")),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_message_deliveries_attempts")),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"],
                                name=op.f("fk_message_deliveries_message_id_messages"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_deliveries")),
        sa.UniqueConstraint("message_id", "channel",
                            name=op.f("uq_message_deliveries_message_id_channel")),
    )
    with op.batch_alter_table("message_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_message_deliveries_due", ["status", "next_attempt_at"],
                              unique=False)
    op.create_table(
        "scheduler_locks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scheduler_locks")),
    )


def downgrade():
    op.drop_table("scheduler_locks")
    with op.batch_alter_table("message_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_message_deliveries_due")
    op.drop_table("message_deliveries")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_unread")
        batch_op.drop_index("ix_messages_recipient_created")
        batch_op.drop_index(batch_op.f("ix_messages_batch"))
    op.drop_table("messages")
