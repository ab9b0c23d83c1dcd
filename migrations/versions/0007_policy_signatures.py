"""policy documents, versions, reading sessions, signatures; policy lessons

Revision ID: 0007
Revises: 0006

Widens ``ck_lessons_kind`` to include 'policy' and adds ``lessons.policy_version_id``.
On SQLite that recreates the lessons table, which drops its triggers and fails while
the triggers of other tables (0006) name it: so all 0006 SQLite triggers are dropped
first and created again afterwards from 0006's own definitions.
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('video', 'document')"
NEW_KINDS = "kind IN ('video', 'document', 'policy')"


def _freeze_migration():
    """Revision 0006's module (its trigger definitions), loaded from its file."""
    path = Path(__file__).with_name("0006_freeze_published_versions.py")
    spec = importlib.util.spec_from_file_location("_migration_0006", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alter_lessons(change) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    freeze = _freeze_migration() if sqlite else None
    if sqlite:
        for name in reversed(freeze.SQLITE_TRIGGERS):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table("lessons", schema=None) as batch_op:
        change(batch_op)
    if sqlite:
        freeze._upgrade_sqlite()


def _tables() -> None:
    op.create_table(
        "policy_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("statement_template", sa.Text(), nullable=False),
        sa.Column("min_reading_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint("min_reading_seconds >= 0 AND min_reading_seconds <= 3600",
                           name=op.f("ck_policy_documents_min_reading_seconds")),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"],
                                name=op.f("fk_policy_documents_created_by_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_documents")),
        sa.UniqueConstraint("name", name=op.f("uq_policy_documents_name")),
    )
    op.create_table(
        "policy_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("body_kind", sa.String(length=8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("storage_key", sa.String(length=128), nullable=True),
        sa.Column("original_filename", sa.String(length=255), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("published_by_id", sa.Integer(), nullable=True),
        sa.Column("publish_ledger_seq", sa.Integer(), nullable=True),
        sa.CheckConstraint("status IN ('draft', 'published')",
                           name=op.f("ck_policy_versions_status")),
        sa.CheckConstraint("body_kind IN ('text', 'pdf')",
                           name=op.f("ck_policy_versions_body_kind")),
        sa.ForeignKeyConstraint(["document_id"], ["policy_documents.id"],
                                name=op.f("fk_policy_versions_document_id_policy_documents"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"],
                                name=op.f("fk_policy_versions_created_by_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["published_by_id"], ["users.id"],
                                name=op.f("fk_policy_versions_published_by_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_versions")),
        sa.UniqueConstraint("document_id", "number",
                            name="uq_policy_versions_document_number"),
    )
    with op.batch_alter_table("policy_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_versions_document_id"), ["document_id"],
                              unique=False)
    op.create_table(
        "policy_readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=False),
        sa.Column("policy_version_id", sa.Integer(), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_policy_readings_user_id_users"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["lesson_id"], ["lessons.id"],
                                name=op.f("fk_policy_readings_lesson_id_lessons"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["policy_version_id"], ["policy_versions.id"],
                                name=op.f("fk_policy_readings_policy_version_id_policy_versions"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policy_readings")),
        sa.UniqueConstraint("token", name=op.f("uq_policy_readings_token")),
    )
    with op.batch_alter_table("policy_readings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_policy_readings_user_id"), ["user_id"],
                              unique=False)
    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("verification_code", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("employee_id", sa.Integer(), nullable=False),
        sa.Column("employee_no", sa.String(length=32), nullable=False),
        sa.Column("signer_name", sa.String(length=64), nullable=False),
        sa.Column("id_number_masked", sa.String(length=32), nullable=True),
        sa.Column("policy_document_id", sa.Integer(), nullable=False),
        sa.Column("policy_version_id", sa.Integer(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("document_sha256", sa.String(length=64), nullable=False),
        sa.Column("lesson_id", sa.Integer(), nullable=True),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("statement_sha256", sa.String(length=64), nullable=False),
        sa.Column("reading_seconds", sa.Float(), nullable=False),
        sa.Column("auth_method", sa.String(length=16), nullable=False),
        sa.Column("auth_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("ledger_seq", sa.Integer(), nullable=False),
        sa.Column("ledger_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_signatures_user_id_users"), ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["employee_id"], ["employees.id"],
                                name=op.f("fk_signatures_employee_id_employees"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["policy_document_id"], ["policy_documents.id"],
                                name=op.f("fk_signatures_policy_document_id_policy_documents"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["policy_version_id"], ["policy_versions.id"],
                                name=op.f("fk_signatures_policy_version_id_policy_versions"),
                                ondelete="RESTRICT"),
        sa.ForeignKeyConstraint(["lesson_id"], ["lessons.id"],
                                name=op.f("fk_signatures_lesson_id_lessons"),
                                ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signatures")),
        sa.UniqueConstraint("verification_code", name=op.f("uq_signatures_verification_code")),
        sa.UniqueConstraint("user_id", "policy_version_id", name="uq_signatures_user_version"),
    )
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signatures_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_signatures_policy_version_id"),
                              ["policy_version_id"], unique=False)


def upgrade():
    _tables()

    def widen(batch_op) -> None:
        batch_op.add_column(sa.Column("policy_version_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_lessons_policy_version_id"),
                              ["policy_version_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_lessons_policy_version_id_policy_versions"), "policy_versions",
            ["policy_version_id"], ["id"], ondelete="RESTRICT")
        batch_op.drop_constraint(batch_op.f("ck_lessons_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_lessons_kind"), NEW_KINDS)

    _alter_lessons(widen)


def downgrade():
    def narrow(batch_op) -> None:
        batch_op.drop_constraint(batch_op.f("ck_lessons_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_lessons_kind"), OLD_KINDS)
        batch_op.drop_constraint(batch_op.f("fk_lessons_policy_version_id_policy_versions"),
                                 type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_lessons_policy_version_id"))
        batch_op.drop_column("policy_version_id")

    _alter_lessons(narrow)
    op.drop_table("signatures")
    op.drop_table("policy_readings")
    op.drop_table("policy_versions")
    op.drop_table("policy_documents")
