"""Signature rows are evidence and published policy versions are frozen: the database
refuses UPDATE and DELETE (and TRUNCATE of signatures on PostgreSQL), like the ledger.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SIGNATURES_MSG = "signatures are evidence and cannot be changed"
POLICY_MSG = "published policy version is immutable"


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"""
            CREATE FUNCTION signatures_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '{SIGNATURES_MSG}: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$""")
        op.execute("CREATE TRIGGER signatures_no_update_delete BEFORE UPDATE OR DELETE "
                   "ON signatures FOR EACH ROW EXECUTE FUNCTION signatures_refuse_change()")
        op.execute("CREATE TRIGGER signatures_no_truncate BEFORE TRUNCATE ON signatures "
                   "FOR EACH STATEMENT EXECUTE FUNCTION signatures_refuse_change()")
        op.execute(f"""
            CREATE FUNCTION policy_versions_refuse_change() RETURNS trigger LANGUAGE plpgsql
            AS $$
            BEGIN
                IF OLD.status = 'published' THEN
                    RAISE EXCEPTION '{POLICY_MSG}: % refused', TG_OP
                        USING ERRCODE = 'insufficient_privilege';
                END IF;
                IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
                RETURN NEW;
            END $$""")
        op.execute("CREATE TRIGGER policy_versions_frozen BEFORE UPDATE OR DELETE "
                   "ON policy_versions FOR EACH ROW "
                   "EXECUTE FUNCTION policy_versions_refuse_change()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER signatures_no_{event.lower()} BEFORE {event} ON "
                       f"signatures BEGIN SELECT RAISE(ABORT, '{SIGNATURES_MSG}: {event} "
                       "refused'); END")
            op.execute(f"CREATE TRIGGER policy_versions_frozen_{event.lower()} BEFORE {event} "
                       "ON policy_versions WHEN OLD.status = 'published' BEGIN "
                       f"SELECT RAISE(ABORT, '{POLICY_MSG}: {event} refused'); END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER policy_versions_frozen ON policy_versions")
        op.execute("DROP FUNCTION policy_versions_refuse_change()")
        op.execute("DROP TRIGGER signatures_no_truncate ON signatures")
        op.execute("DROP TRIGGER signatures_no_update_delete ON signatures")
        op.execute("DROP FUNCTION signatures_refuse_change()")
    else:
        for name in ("policy_versions_frozen_delete", "policy_versions_frozen_update",
                     "signatures_no_delete", "signatures_no_update"):
            op.execute(f"DROP TRIGGER {name}")
