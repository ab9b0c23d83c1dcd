"""enrolment cycles: every learning record belongs to one enrolment (a learner's round on
a course version), so a recertification round starts empty and earlier rounds stay

- enrollments: ``cycle`` and ``superseded_at``; unique (user, version, cycle) and at most
  one current (not superseded) enrolment per person and version (partial unique index);
- lesson_progress, playback_sessions, policy_readings, signatures: ``enrollment_id``
  (backfilled from the one enrolment each row had); progress is unique per enrolment and
  lesson, signatures per enrolment and policy version; watch_rejections get it too;
- assignments: ``enrollment_id`` (the round that fulfils the obligation) and the source
  'recurrence'; rules: ``recur_months``.

Rows of learning without an enrolment (none are expected) get a 'manual' enrolment so
the backfill loses nothing. Signatures are evidence: their triggers are lifted only for
the backfill, in this transaction, and restored.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 22:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

SIGNATURES_MSG = "signatures are evidence and cannot be changed"
OLD_SOURCES = "source IN ('rule', 'manual', 'retraining')"
NEW_SOURCES = "source IN ('rule', 'manual', 'retraining', 'recurrence')"

# (table, how a row finds its version: SQL giving version_id for the row alias "t")
_LEARNING = (
    ("lesson_progress", "SELECT version_id FROM lessons WHERE lessons.id = t.lesson_id"),
    ("playback_sessions", "SELECT version_id FROM lessons WHERE lessons.id = t.lesson_id"),
    ("watch_rejections", "SELECT version_id FROM lessons WHERE lessons.id = t.lesson_id"),
    ("policy_readings", "SELECT version_id FROM lessons WHERE lessons.id = t.lesson_id"),
    ("signatures", "SELECT version_id FROM lessons WHERE lessons.id = t.lesson_id"),
)


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _drop_signature_triggers() -> None:
    if _postgres():
        op.execute("DROP TRIGGER signatures_no_update_delete ON signatures")
    else:
        op.execute("DROP TRIGGER signatures_no_update")
        op.execute("DROP TRIGGER signatures_no_delete")


def _create_signature_triggers() -> None:
    if _postgres():  # the function and the TRUNCATE trigger of 0008 were left in place
        op.execute("CREATE TRIGGER signatures_no_update_delete BEFORE UPDATE OR DELETE "
                   "ON signatures FOR EACH ROW EXECUTE FUNCTION signatures_refuse_change()")
    else:
        for event in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER signatures_no_{event.lower()} BEFORE {event} ON "
                       f"signatures BEGIN SELECT RAISE(ABORT, '{SIGNATURES_MSG}: {event} "
                       "refused'); END")


def _backfill(table: str, version_sql: str) -> None:
    # every (user, version) with learning records but no enrolment gets a 'manual' one
    op.execute(f"""
        INSERT INTO enrollments (user_id, version_id, source, created_at, cycle)
        SELECT DISTINCT t.user_id, ({version_sql}), 'manual', CURRENT_TIMESTAMP, 1
        FROM {table} t
        WHERE t.lesson_id IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM enrollments e
            WHERE e.user_id = t.user_id AND e.version_id = ({version_sql}))""")
    op.execute(f"""
        UPDATE {table} SET enrollment_id = (
            SELECT e.id FROM enrollments e
            WHERE e.user_id = {table}.user_id AND e.version_id = (
                SELECT version_id FROM lessons WHERE lessons.id = {table}.lesson_id))
        WHERE lesson_id IS NOT NULL""")


def upgrade():
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cycle', sa.Integer(), nullable=False,
                                      server_default='1'))
        batch_op.add_column(sa.Column('superseded_at', sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.drop_constraint('uq_enrollments_user_version', type_='unique')
        batch_op.create_unique_constraint('uq_enrollments_user_version_cycle',
                                          ['user_id', 'version_id', 'cycle'])
        batch_op.create_check_constraint(batch_op.f('ck_enrollments_cycle'), 'cycle >= 1')
    op.create_index('uq_enrollments_current', 'enrollments', ['user_id', 'version_id'],
                    unique=True, sqlite_where=sa.text('superseded_at IS NULL'),
                    postgresql_where=sa.text('superseded_at IS NULL'))

    _drop_signature_triggers()
    for table, version_sql in _LEARNING:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('enrollment_id', sa.Integer(), nullable=True))
        _backfill(table, version_sql)

    with op.batch_alter_table('lesson_progress', schema=None) as batch_op:
        batch_op.alter_column('enrollment_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('uq_lesson_progress_user_lesson', type_='unique')
        batch_op.create_unique_constraint('uq_lesson_progress_enrollment_lesson',
                                          ['enrollment_id', 'lesson_id'])
        batch_op.create_index('ix_lesson_progress_user_lesson', ['user_id', 'lesson_id'])
        batch_op.create_foreign_key(batch_op.f('fk_lesson_progress_enrollment_id_enrollments'),
                                    'enrollments', ['enrollment_id'], ['id'],
                                    ondelete='RESTRICT')
    with op.batch_alter_table('playback_sessions', schema=None) as batch_op:
        batch_op.alter_column('enrollment_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_index('ix_playback_sessions_enrollment_lesson',
                              ['enrollment_id', 'lesson_id'])
        batch_op.create_foreign_key(
            batch_op.f('fk_playback_sessions_enrollment_id_enrollments'), 'enrollments',
            ['enrollment_id'], ['id'], ondelete='RESTRICT')
    with op.batch_alter_table('watch_rejections', schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f('fk_watch_rejections_enrollment_id_enrollments'), 'enrollments',
            ['enrollment_id'], ['id'], ondelete='RESTRICT')
    with op.batch_alter_table('policy_readings', schema=None) as batch_op:
        batch_op.alter_column('enrollment_id', existing_type=sa.Integer(), nullable=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_policy_readings_enrollment_id_enrollments'), 'enrollments',
            ['enrollment_id'], ['id'], ondelete='RESTRICT')
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.alter_column('enrollment_id', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint('uq_signatures_user_version', type_='unique')
        batch_op.create_unique_constraint('uq_signatures_enrollment_version',
                                          ['enrollment_id', 'policy_version_id'])
        batch_op.create_index(batch_op.f('ix_signatures_enrollment_id'), ['enrollment_id'])
        batch_op.create_foreign_key(batch_op.f('fk_signatures_enrollment_id_enrollments'),
                                    'enrollments', ['enrollment_id'], ['id'],
                                    ondelete='RESTRICT')
    _create_signature_triggers()

    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enrollment_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_assignments_enrollment_id'), ['enrollment_id'])
        batch_op.create_foreign_key(batch_op.f('fk_assignments_enrollment_id_enrollments'),
                                    'enrollments', ['enrollment_id'], ['id'],
                                    ondelete='RESTRICT')
        batch_op.drop_constraint(batch_op.f('ck_assignments_source'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_assignments_source'), NEW_SOURCES)
    op.execute("""
        UPDATE assignments SET enrollment_id = (
            SELECT e.id FROM enrollments e
            WHERE e.user_id = assignments.user_id AND e.version_id = assignments.version_id)""")
    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recur_months', sa.Integer(), nullable=True))
        batch_op.create_check_constraint(
            batch_op.f('ck_assignment_rules_recur_months'),
            'recur_months IS NULL OR (recur_months >= 1 AND recur_months <= 120)')


def downgrade():
    # Refused when a recertification round exists: the old schema cannot hold it.
    rounds = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM enrollments WHERE cycle > 1")).scalar()
    if rounds:
        raise RuntimeError(f"{rounds} recertification enrolments exist; the schema before "
                           "0013 cannot hold them, so it is not restored")
    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_assignment_rules_recur_months'), type_='check')
        batch_op.drop_column('recur_months')
    op.execute("DELETE FROM assignments WHERE source = 'recurrence'")
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_assignments_source'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_assignments_source'), OLD_SOURCES)
        batch_op.drop_constraint(batch_op.f('fk_assignments_enrollment_id_enrollments'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_assignments_enrollment_id'))
        batch_op.drop_column('enrollment_id')
    _drop_signature_triggers()
    with op.batch_alter_table('signatures', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_signatures_enrollment_id_enrollments'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_signatures_enrollment_id'))
        batch_op.drop_constraint('uq_signatures_enrollment_version', type_='unique')
        batch_op.create_unique_constraint('uq_signatures_user_version',
                                          ['user_id', 'policy_version_id'])
        batch_op.drop_column('enrollment_id')
    _create_signature_triggers()
    for table in ('policy_readings', 'watch_rejections', 'playback_sessions'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_enrollment_id_enrollments'),
                                     type_='foreignkey')
            if table == 'playback_sessions':
                batch_op.drop_index('ix_playback_sessions_enrollment_lesson')
            batch_op.drop_column('enrollment_id')
    with op.batch_alter_table('lesson_progress', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_lesson_progress_enrollment_id_enrollments'),
                                 type_='foreignkey')
        batch_op.drop_index('ix_lesson_progress_user_lesson')
        batch_op.drop_constraint('uq_lesson_progress_enrollment_lesson', type_='unique')
        batch_op.create_unique_constraint('uq_lesson_progress_user_lesson',
                                          ['user_id', 'lesson_id'])
        batch_op.drop_column('enrollment_id')
    op.drop_index('uq_enrollments_current', table_name='enrollments',
                  sqlite_where=sa.text('superseded_at IS NULL'),
                  postgresql_where=sa.text('superseded_at IS NULL'))
    with op.batch_alter_table('enrollments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_enrollments_cycle'), type_='check')
        batch_op.drop_constraint('uq_enrollments_user_version_cycle', type_='unique')
        batch_op.create_unique_constraint('uq_enrollments_user_version',
                                          ['user_id', 'version_id'])
        batch_op.drop_column('superseded_at')
        batch_op.drop_column('cycle')
