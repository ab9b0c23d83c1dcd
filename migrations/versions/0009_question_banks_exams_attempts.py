"""question banks, exams (a lesson kind) and exam attempts

Revision ID: 0009
Revises: 0008

Widens ``ck_lessons_kind`` to include 'exam' (on SQLite a rebuild of lessons, done with
0007's helper that drops and recreates 0006's triggers around it), creates the tables,
and adds triggers so that evidence is never edited in place:

- exams: no UPDATE or DELETE once frozen (``frozen_at`` is set when its course version
  is published, in the same transaction);
- exam_attempts: no UPDATE or DELETE once submitted;
- attempt_answers: no INSERT, UPDATE or DELETE for a submitted attempt.

The attempt limit is a constraint: (exam_id, max_attempts) references
exams (id, max_attempts), number is checked against it and unique per enrolment.
"""

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_KINDS = "kind IN ('video', 'document', 'policy')"
NEW_KINDS = "kind IN ('video', 'document', 'policy', 'exam')"
EXAMS_MSG = "published exam is immutable"
ATTEMPTS_MSG = "submitted exam attempt is evidence and cannot be changed"


def _policy_migration():
    """Revision 0007's module (its lessons-rebuild helper), loaded from its file."""
    path = Path(__file__).with_name("0007_policy_signatures.py")
    spec = importlib.util.spec_from_file_location("_migration_0007", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _set_kinds(kinds: str) -> None:
    def change(batch_op) -> None:
        batch_op.drop_constraint(batch_op.f("ck_lessons_kind"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_lessons_kind"), kinds)

    _policy_migration()._alter_lessons(change)


def _triggers_postgresql() -> None:
    op.execute(f"""
        CREATE FUNCTION exams_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{EXAMS_MSG}: % of exam % refused', TG_OP, OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END $$""")
    op.execute("CREATE TRIGGER exams_frozen BEFORE UPDATE OR DELETE ON exams FOR EACH ROW "
               "WHEN (OLD.frozen_at IS NOT NULL) EXECUTE FUNCTION exams_refuse_change()")
    op.execute(f"""
        CREATE FUNCTION exam_attempts_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '{ATTEMPTS_MSG}: % of attempt % refused', TG_OP, OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END $$""")
    op.execute("CREATE TRIGGER exam_attempts_frozen BEFORE UPDATE OR DELETE ON exam_attempts "
               "FOR EACH ROW WHEN (OLD.submitted_at IS NOT NULL) "
               "EXECUTE FUNCTION exam_attempts_refuse_change()")
    op.execute(f"""
        CREATE FUNCTION attempt_answers_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            ids integer[];
        BEGIN
            IF TG_OP = 'INSERT' THEN
                ids := ARRAY[NEW.attempt_id];
            ELSIF TG_OP = 'DELETE' THEN
                ids := ARRAY[OLD.attempt_id];
            ELSE
                ids := ARRAY[OLD.attempt_id, NEW.attempt_id];
            END IF;
            -- Lock the attempt rows first so a concurrent submit is seen once committed.
            PERFORM 1 FROM exam_attempts WHERE id = ANY(ids) FOR SHARE;
            IF EXISTS (SELECT 1 FROM exam_attempts
                       WHERE id = ANY(ids) AND submitted_at IS NOT NULL) THEN
                RAISE EXCEPTION '{ATTEMPTS_MSG}: % of an answer refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END $$""")
    op.execute("CREATE TRIGGER attempt_answers_frozen BEFORE INSERT OR UPDATE OR DELETE "
               "ON attempt_answers FOR EACH ROW EXECUTE FUNCTION attempt_answers_refuse_change()")


SQLITE_TRIGGERS = (
    "exams_frozen_update", "exams_frozen_delete",
    "exam_attempts_frozen_update", "exam_attempts_frozen_delete",
    "attempt_answers_frozen_insert", "attempt_answers_frozen_update",
    "attempt_answers_frozen_delete",
)


def _triggers_sqlite() -> None:
    for event in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER exams_frozen_{event.lower()} BEFORE {event} ON exams "
                   f"WHEN OLD.frozen_at IS NOT NULL BEGIN "
                   f"SELECT RAISE(ABORT, '{EXAMS_MSG}: {event} refused'); END")
        op.execute(f"CREATE TRIGGER exam_attempts_frozen_{event.lower()} BEFORE {event} ON "
                   f"exam_attempts WHEN OLD.submitted_at IS NOT NULL BEGIN "
                   f"SELECT RAISE(ABORT, '{ATTEMPTS_MSG}: {event} refused'); END")
    submitted = ("(SELECT submitted_at FROM exam_attempts WHERE id = {ref}.attempt_id) "
                 "IS NOT NULL")
    conditions = {
        "INSERT": submitted.format(ref="NEW"),
        "UPDATE": f"{submitted.format(ref='OLD')} OR {submitted.format(ref='NEW')}",
        "DELETE": submitted.format(ref="OLD"),
    }
    for event, condition in conditions.items():
        op.execute(f"CREATE TRIGGER attempt_answers_frozen_{event.lower()} BEFORE {event} ON "
                   f"attempt_answers WHEN {condition} BEGIN "
                   f"SELECT RAISE(ABORT, '{ATTEMPTS_MSG}: {event} of an answer refused'); END")


def upgrade():
    _set_kinds(NEW_KINDS)
    _tables()
    if op.get_bind().dialect.name == "postgresql":
        _triggers_postgresql()
    else:
        _triggers_sqlite()


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER attempt_answers_frozen ON attempt_answers")
        op.execute("DROP FUNCTION attempt_answers_refuse_change()")
        op.execute("DROP TRIGGER exam_attempts_frozen ON exam_attempts")
        op.execute("DROP FUNCTION exam_attempts_refuse_change()")
        op.execute("DROP TRIGGER exams_frozen ON exams")
        op.execute("DROP FUNCTION exams_refuse_change()")
    else:
        for name in reversed(SQLITE_TRIGGERS):
            op.execute(f"DROP TRIGGER {name}")
    _drop_tables()
    _set_kinds(OLD_KINDS)


def _tables():
    op.create_table('question_banks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_question_banks_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_question_banks')),
    sa.UniqueConstraint('name', name=op.f('uq_question_banks_name'))
    )
    op.create_table('questions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('topic', sa.String(length=32), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('explanation', sa.Text(), nullable=False),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('single', 'multiple', 'true_false')", name=op.f('ck_questions_kind')),
    sa.CheckConstraint("topic IN ('identity_verification', 'labour_contracts', 'social_insurance', 'work_injury', 'attendance', 'performance', 'offboarding', 'notice_delivery', 'other')", name=op.f('ck_questions_topic')),
    sa.ForeignKeyConstraint(['bank_id'], ['question_banks.id'], name=op.f('fk_questions_bank_id_question_banks'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_questions'))
    )
    with op.batch_alter_table('questions', schema=None) as batch_op:
        batch_op.create_index('ix_questions_bank_topic', ['bank_id', 'topic'], unique=False)

    op.create_table('question_options',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('question_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('is_correct', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['question_id'], ['questions.id'], name=op.f('fk_question_options_question_id_questions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_question_options')),
    sa.UniqueConstraint('question_id', 'position', name='uq_question_options_question_position')
    )
    with op.batch_alter_table('question_options', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_question_options_question_id'), ['question_id'], unique=False)

    op.create_table('exams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lesson_id', sa.Integer(), nullable=False),
    sa.Column('bank_id', sa.Integer(), nullable=False),
    sa.Column('selection', sa.String(length=16), nullable=False),
    sa.Column('fixed_question_ids', sa.Text(), nullable=False),
    sa.Column('per_topic', sa.Text(), nullable=False),
    sa.Column('pass_score', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('time_limit_minutes', sa.Integer(), nullable=False),
    sa.Column('review', sa.String(length=24), nullable=False),
    sa.Column('shuffle_options', sa.Boolean(), nullable=False),
    sa.Column('pool', sa.Text(), nullable=True),
    sa.Column('pool_sha256', sa.String(length=64), nullable=True),
    sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("review IN ('score', 'answers', 'answers_when_done')", name=op.f('ck_exams_review')),
    sa.CheckConstraint("selection IN ('fixed', 'random')", name=op.f('ck_exams_selection')),
    sa.CheckConstraint('max_attempts >= 1 AND max_attempts <= 10', name=op.f('ck_exams_max_attempts')),
    sa.CheckConstraint('pass_score >= 1 AND pass_score <= 100', name=op.f('ck_exams_pass_score')),
    sa.CheckConstraint('time_limit_minutes >= 1 AND time_limit_minutes <= 180', name=op.f('ck_exams_time_limit_minutes')),
    sa.ForeignKeyConstraint(['bank_id'], ['question_banks.id'], name=op.f('fk_exams_bank_id_question_banks'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['lesson_id'], ['lessons.id'], name=op.f('fk_exams_lesson_id_lessons'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exams')),
    sa.UniqueConstraint('id', 'max_attempts', name='uq_exams_id_max_attempts'),
    sa.UniqueConstraint('lesson_id', name=op.f('uq_exams_lesson_id'))
    )
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_exams_bank_id'), ['bank_id'], unique=False)

    op.create_table('exam_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('exam_id', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('enrollment_id', sa.Integer(), nullable=False),
    sa.Column('lesson_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('seed', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('served', sa.Text(), nullable=False),
    sa.Column('served_sha256', sa.String(length=64), nullable=False),
    sa.Column('question_count', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=16), nullable=True),
    sa.Column('answers', sa.Text(), nullable=True),
    sa.Column('answers_sha256', sa.String(length=64), nullable=True),
    sa.Column('correct_count', sa.Integer(), nullable=True),
    sa.Column('score', sa.Integer(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.Column('ledger_seq', sa.Integer(), nullable=True),
    sa.Column('ledger_hash', sa.String(length=64), nullable=True),
    sa.CheckConstraint("end_reason IN ('submitted', 'timeout')", name=op.f('ck_exam_attempts_end_reason')),
    sa.CheckConstraint('number >= 1 AND number <= max_attempts', name=op.f('ck_exam_attempts_attempt_limit')),
    sa.ForeignKeyConstraint(['exam_id', 'max_attempts'], ['exams.id', 'exams.max_attempts'], name='fk_exam_attempts_exam_max_attempts', ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['enrollment_id'], ['enrollments.id'], name=op.f('fk_exam_attempts_enrollment_id_enrollments'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['lesson_id'], ['lessons.id'], name=op.f('fk_exam_attempts_lesson_id_lessons'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_exam_attempts_user_id_users'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exam_attempts')),
    sa.UniqueConstraint('exam_id', 'enrollment_id', 'number', name='uq_exam_attempts_exam_enrollment_number')
    )
    with op.batch_alter_table('exam_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_exam_attempts_user_exam', ['user_id', 'exam_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_exam_attempts_enrollment_id'), ['enrollment_id'], unique=False)
        batch_op.create_index('uq_exam_attempts_one_open', ['exam_id', 'enrollment_id'], unique=True, sqlite_where=sa.text('submitted_at IS NULL'), postgresql_where=sa.text('submitted_at IS NULL'))

    op.create_table('attempt_answers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('choice', sa.String(length=64), nullable=False),
    sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['attempt_id'], ['exam_attempts.id'], name=op.f('fk_attempt_answers_attempt_id_exam_attempts'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempt_answers')),
    sa.UniqueConstraint('attempt_id', 'position', name='uq_attempt_answers_attempt_position')
    )


def _drop_tables():
    op.drop_table('attempt_answers')
    with op.batch_alter_table('exam_attempts', schema=None) as batch_op:
        batch_op.drop_index('uq_exam_attempts_one_open', sqlite_where=sa.text('submitted_at IS NULL'), postgresql_where=sa.text('submitted_at IS NULL'))
        batch_op.drop_index('ix_exam_attempts_user_exam')
        batch_op.drop_index(batch_op.f('ix_exam_attempts_enrollment_id'))

    op.drop_table('exam_attempts')
    with op.batch_alter_table('exams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exams_bank_id'))

    op.drop_table('exams')
    with op.batch_alter_table('question_options', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_question_options_question_id'))

    op.drop_table('question_options')
    with op.batch_alter_table('questions', schema=None) as batch_op:
        batch_op.drop_index('ix_questions_bank_topic')

    op.drop_table('questions')
    op.drop_table('question_banks')
