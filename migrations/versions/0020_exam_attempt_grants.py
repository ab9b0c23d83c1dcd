"""exam attempt grants: HR gives a learner who used every attempt extra ones

- exam_attempt_grants: one row per grant (enrolment, exam, extra 1..5, reason, who,
  when) with ``allowed``, the enrolment's total allowance once the grant counts; unique
  per (enrollment_id, exam_id, allowed), so two concurrent grants cannot both count;
- exam_attempts: the composite foreign key (exam_id, max_attempts) -> exams (id,
  max_attempts) becomes a plain foreign key on exam_id, since a granted attempt's
  allowance is more than the exam's own; a trigger keeps the guarantee it gave: an
  attempt's ``max_attempts`` is the exam's own or the ``allowed`` of one of the
  enrolment's grants for that exam (with the CHECK ``number <= max_attempts`` the
  attempt limit stays a database rule);
- triggers on exam_attempt_grants: each grant must continue the sum (exam's
  max_attempts + earlier grants + this one) and a grant is evidence: no UPDATE or DELETE.

On SQLite altering the foreign key rebuilds exam_attempts, which drops its triggers and
fails while other tables' triggers name it: so 0009's triggers are dropped first and
created again afterwards from 0009's own definitions (as 0007 does for 0006).

Downgrading refuses while grants exist (they are evidence, and the attempts they allowed
would not fit the older schema).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 06:00:00

"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

ALLOWANCE_MSG = "exam attempt allowance is neither the exam's nor granted"
CHAIN_MSG = "exam attempt grant must add to the allowance granted so far"
GRANTS_MSG = "exam attempt grant is evidence and cannot be changed"

# An attempt's allowance: the exam's own, or one granted to that enrolment on that exam.
NOT_ALLOWED = (
    "NEW.max_attempts IS DISTINCT FROM (SELECT e.max_attempts FROM exams e "
    "WHERE e.id = NEW.exam_id) AND NOT EXISTS (SELECT 1 FROM exam_attempt_grants g "
    "WHERE g.enrollment_id = NEW.enrollment_id AND g.exam_id = NEW.exam_id "
    "AND g.allowed = NEW.max_attempts)")
# A grant's total: the exam's allowance, every earlier grant, and this one.
NOT_CHAINED = (
    "NEW.allowed IS DISTINCT FROM ((SELECT e.max_attempts FROM exams e "
    "WHERE e.id = NEW.exam_id) + COALESCE((SELECT SUM(g.extra) FROM exam_attempt_grants g "
    "WHERE g.enrollment_id = NEW.enrollment_id AND g.exam_id = NEW.exam_id), 0) "
    "+ NEW.extra)")

SQLITE_TRIGGERS = (
    "exam_attempts_allowance_insert", "exam_attempts_allowance_update",
    "exam_attempt_grants_chain", "exam_attempt_grants_frozen_update",
    "exam_attempt_grants_frozen_delete",
)


def _exams_migration():
    """Revision 0009's module (its trigger definitions), loaded from its file."""
    path = Path(__file__).with_name("0009_question_banks_exams_attempts.py")
    spec = importlib.util.spec_from_file_location("_migration_0009", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _alter_attempts(change) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    exams = _exams_migration() if sqlite else None
    if sqlite:
        for name in reversed(exams.SQLITE_TRIGGERS):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    with op.batch_alter_table('exam_attempts', schema=None) as batch_op:
        change(batch_op)
    if sqlite:
        exams._triggers_sqlite()


def _triggers_postgresql() -> None:
    op.execute(f"""
        CREATE FUNCTION exam_attempts_check_allowance() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {NOT_ALLOWED} THEN
                RAISE EXCEPTION '{ALLOWANCE_MSG.replace("'", "''")}: % of exam % refused',
                    NEW.max_attempts, NEW.exam_id USING ERRCODE = 'foreign_key_violation';
            END IF;
            RETURN NEW;
        END $$""")
    op.execute("CREATE TRIGGER exam_attempts_allowance BEFORE INSERT OR UPDATE OF exam_id, "
               "enrollment_id, max_attempts ON exam_attempts FOR EACH ROW "
               "EXECUTE FUNCTION exam_attempts_check_allowance()")
    op.execute(f"""
        CREATE FUNCTION exam_attempt_grants_check_chain() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {NOT_CHAINED} THEN
                RAISE EXCEPTION '{CHAIN_MSG}: allowed % refused', NEW.allowed
                    USING ERRCODE = 'check_violation';
            END IF;
            RETURN NEW;
        END $$""")
    op.execute("CREATE TRIGGER exam_attempt_grants_chain BEFORE INSERT ON exam_attempt_grants "
               "FOR EACH ROW EXECUTE FUNCTION exam_attempt_grants_check_chain()")
    op.execute(f"""
        CREATE FUNCTION exam_attempt_grants_refuse_change() RETURNS trigger LANGUAGE plpgsql
        AS $$
        BEGIN
            RAISE EXCEPTION '{GRANTS_MSG}: % of grant % refused', TG_OP, OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END $$""")
    op.execute("CREATE TRIGGER exam_attempt_grants_frozen BEFORE UPDATE OR DELETE ON "
               "exam_attempt_grants FOR EACH ROW "
               "EXECUTE FUNCTION exam_attempt_grants_refuse_change()")


def _triggers_sqlite() -> None:
    allowance = ALLOWANCE_MSG.replace("'", "''")
    op.execute(f"CREATE TRIGGER exam_attempts_allowance_insert BEFORE INSERT ON exam_attempts "
               f"WHEN {NOT_ALLOWED} BEGIN SELECT RAISE(ABORT, '{allowance}'); END")
    op.execute(f"CREATE TRIGGER exam_attempts_allowance_update BEFORE UPDATE OF exam_id, "
               f"enrollment_id, max_attempts ON exam_attempts WHEN {NOT_ALLOWED} BEGIN "
               f"SELECT RAISE(ABORT, '{allowance}'); END")
    op.execute(f"CREATE TRIGGER exam_attempt_grants_chain BEFORE INSERT ON exam_attempt_grants "
               f"WHEN {NOT_CHAINED} BEGIN SELECT RAISE(ABORT, '{CHAIN_MSG}'); END")
    for event in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER exam_attempt_grants_frozen_{event.lower()} BEFORE {event} "
                   f"ON exam_attempt_grants BEGIN "
                   f"SELECT RAISE(ABORT, '{GRANTS_MSG}: {event} refused'); END")


def upgrade():
    op.create_table(
        'exam_attempt_grants',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('enrollment_id', sa.Integer(), nullable=False),
        sa.Column('exam_id', sa.Integer(), nullable=False),
        sa.Column('extra', sa.Integer(), nullable=False),
        sa.Column('allowed', sa.Integer(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('granted_by_id', sa.Integer(), nullable=False),
        sa.Column('granted_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('extra >= 1 AND extra <= 5', name=op.f('ck_exam_attempt_grants_extra')),
        sa.CheckConstraint('allowed > extra', name=op.f('ck_exam_attempt_grants_allowed')),
        sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'],
                                name=op.f('fk_exam_attempt_grants_enrollment_id_enrollments'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['exam_id'], ['exams.id'],
                                name=op.f('fk_exam_attempt_grants_exam_id_exams'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['granted_by_id'], ['users.id'],
                                name=op.f('fk_exam_attempt_grants_granted_by_id_users'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_exam_attempt_grants')),
        sa.UniqueConstraint('enrollment_id', 'exam_id', 'allowed',
                            name='uq_exam_attempt_grants_enrollment_exam_allowed'),
    )

    def loosen(batch_op) -> None:
        batch_op.drop_constraint('fk_exam_attempts_exam_max_attempts', type_='foreignkey')
        batch_op.create_foreign_key(batch_op.f('fk_exam_attempts_exam_id_exams'), 'exams',
                                    ['exam_id'], ['id'], ondelete='RESTRICT')

    _alter_attempts(loosen)
    if op.get_bind().dialect.name == "postgresql":
        _triggers_postgresql()
    else:
        _triggers_sqlite()


def downgrade():
    if op.get_bind().execute(sa.text("SELECT count(*) FROM exam_attempt_grants")).scalar():
        raise RuntimeError("exam attempt grants exist: they are evidence, and the attempts "
                           "they allowed do not fit the schema before 0020; not downgrading")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER exam_attempt_grants_frozen ON exam_attempt_grants")
        op.execute("DROP FUNCTION exam_attempt_grants_refuse_change()")
        op.execute("DROP TRIGGER exam_attempt_grants_chain ON exam_attempt_grants")
        op.execute("DROP FUNCTION exam_attempt_grants_check_chain()")
        op.execute("DROP TRIGGER exam_attempts_allowance ON exam_attempts")
        op.execute("DROP FUNCTION exam_attempts_check_allowance()")
    else:
        for name in reversed(SQLITE_TRIGGERS):
            op.execute(f"DROP TRIGGER {name}")

    def tighten(batch_op) -> None:
        batch_op.drop_constraint(batch_op.f('fk_exam_attempts_exam_id_exams'),
                                 type_='foreignkey')
        batch_op.create_foreign_key('fk_exam_attempts_exam_max_attempts', 'exams',
                                    ['exam_id', 'max_attempts'], ['id', 'max_attempts'],
                                    ondelete='RESTRICT')

    _alter_attempts(tighten)
    op.drop_table('exam_attempt_grants')
