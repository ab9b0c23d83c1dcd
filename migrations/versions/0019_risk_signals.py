"""risk types, their courses, risk signals; assignments from risk signals

- risk_types: code (what the risk system sends; unique), Chinese and English names;
- risk_type_courses: the courses a risk type calls for, each due N working days after
  a signal (1..250);
- risk_signals: one row per signal received (scope: exactly one of department, position
  or employee, as ``scope_kind`` says; ``external_id`` unique: the sender's idempotency
  key), with its counts and per-course results;
- assignments: ``risk_signal_id`` (the signal an assignment answers) and the source
  'risk' in ``ck_assignments_source``.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 06:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

OLD_SOURCES = "source IN ('rule', 'manual', 'retraining', 'recurrence')"
NEW_SOURCES = "source IN ('rule', 'manual', 'retraining', 'recurrence', 'risk')"
SCOPE_CHECK = (
    "(scope_kind = 'department' AND department_id IS NOT NULL AND position_id IS NULL"
    " AND employee_id IS NULL) OR (scope_kind = 'position' AND position_id IS NOT NULL"
    " AND department_id IS NULL AND employee_id IS NULL) OR (scope_kind = 'employee'"
    " AND employee_id IS NOT NULL AND department_id IS NULL AND position_id IS NULL)")


def upgrade():
    op.create_table(
        'risk_types',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=32), nullable=False),
        sa.Column('name_zh', sa.String(length=100), nullable=False),
        sa.Column('name_en', sa.String(length=100), nullable=False),
        sa.Column('description', sa.Text(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['created_by_id'], ['users.id'],
                                name=op.f('fk_risk_types_created_by_id_users'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_types')),
        sa.UniqueConstraint('code', name=op.f('uq_risk_types_code')),
    )
    op.create_table(
        'risk_type_courses',
        sa.Column('risk_type_id', sa.Integer(), nullable=False),
        sa.Column('course_id', sa.Integer(), nullable=False),
        sa.Column('due_working_days', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint('due_working_days >= 1 AND due_working_days <= 250',
                           name=op.f('ck_risk_type_courses_due_working_days')),
        sa.ForeignKeyConstraint(['course_id'], ['courses.id'],
                                name=op.f('fk_risk_type_courses_course_id_courses'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['risk_type_id'], ['risk_types.id'],
                                name=op.f('fk_risk_type_courses_risk_type_id_risk_types'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('risk_type_id', 'course_id', name=op.f('pk_risk_type_courses')),
    )
    op.create_index(op.f('ix_risk_type_courses_course_id'), 'risk_type_courses', ['course_id'],
                    unique=False)
    op.create_table(
        'risk_signals',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('risk_type_id', sa.Integer(), nullable=False),
        sa.Column('severity', sa.String(length=16), nullable=False),
        sa.Column('scope_kind', sa.String(length=16), nullable=False),
        sa.Column('scope_code', sa.String(length=32), nullable=False),
        sa.Column('department_id', sa.Integer(), nullable=True),
        sa.Column('position_id', sa.Integer(), nullable=True),
        sa.Column('employee_id', sa.Integer(), nullable=True),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('external_id', sa.String(length=128), nullable=True),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=True),
        sa.Column('audience', sa.Integer(), nullable=False),
        sa.Column('assigned', sa.Integer(), nullable=False),
        sa.Column('already_assigned', sa.Integer(), nullable=False),
        sa.Column('results', sa.Text(), nullable=False),
        sa.Column('ledger_seq', sa.Integer(), nullable=True),
        sa.CheckConstraint("severity IN ('low', 'medium', 'high', 'critical')",
                           name=op.f('ck_risk_signals_severity')),
        sa.CheckConstraint("scope_kind IN ('department', 'position', 'employee')",
                           name=op.f('ck_risk_signals_scope_kind')),
        sa.CheckConstraint(SCOPE_CHECK, name=op.f('ck_risk_signals_scope')),
        sa.ForeignKeyConstraint(['department_id'], ['departments.id'],
                                name=op.f('fk_risk_signals_department_id_departments'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['employee_id'], ['employees.id'],
                                name=op.f('fk_risk_signals_employee_id_employees'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['position_id'], ['positions.id'],
                                name=op.f('fk_risk_signals_position_id_positions'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['risk_type_id'], ['risk_types.id'],
                                name=op.f('fk_risk_signals_risk_type_id_risk_types'),
                                ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'],
                                name=op.f('fk_risk_signals_token_id_api_tokens'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_signals')),
        sa.UniqueConstraint('external_id', name=op.f('uq_risk_signals_external_id')),
    )
    op.create_index(op.f('ix_risk_signals_risk_type_id'), 'risk_signals', ['risk_type_id'],
                    unique=False)
    op.create_index('ix_risk_signals_received_at', 'risk_signals', ['received_at'],
                    unique=False)

    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('risk_signal_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_assignments_risk_signal_id'), ['risk_signal_id'],
                              unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_assignments_risk_signal_id_risk_signals'),
                                    'risk_signals', ['risk_signal_id'], ['id'],
                                    ondelete='RESTRICT')
        batch_op.drop_constraint(batch_op.f('ck_assignments_source'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_assignments_source'), NEW_SOURCES)


def downgrade():
    # Assignments made by risk signals cannot be kept by the older schema (no source
    # 'risk', nothing to point at); they go with the signals.
    op.execute("DELETE FROM assignments WHERE source = 'risk'")
    with op.batch_alter_table('assignments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_assignments_source'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_assignments_source'), OLD_SOURCES)
        batch_op.drop_constraint(batch_op.f('fk_assignments_risk_signal_id_risk_signals'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_assignments_risk_signal_id'))
        batch_op.drop_column('risk_signal_id')
    op.drop_index('ix_risk_signals_received_at', table_name='risk_signals')
    op.drop_index(op.f('ix_risk_signals_risk_type_id'), table_name='risk_signals')
    op.drop_table('risk_signals')
    op.drop_index(op.f('ix_risk_type_courses_course_id'), table_name='risk_type_courses')
    op.drop_table('risk_type_courses')
    op.drop_table('risk_types')
