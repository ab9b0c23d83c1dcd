"""employee tags: HR's free labels on employees (特殊工种, 外派 …), and assignment rules
that target them

- employee_tags: (employee_id, tag) primary key, deleted with the employee; an index on
  (tag, employee_id) for "who carries these tags" (rule audiences, list filter);
- assignment_rules.tags: JSON list of tags (empty: any), '[]' for existing rules.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 22:45:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'employee_tags',
        sa.Column('employee_id', sa.Integer(), nullable=False),
        sa.Column('tag', sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(['employee_id'], ['employees.id'],
                                name=op.f('fk_employee_tags_employee_id_employees'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('employee_id', 'tag', name=op.f('pk_employee_tags')),
    )
    op.create_index('ix_employee_tags_tag_employee', 'employee_tags', ['tag', 'employee_id'],
                    unique=False)
    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tags', sa.Text(), nullable=False, server_default='[]'))


def downgrade():
    with op.batch_alter_table('assignment_rules', schema=None) as batch_op:
        batch_op.drop_column('tags')
    op.drop_index('ix_employee_tags_tag_employee', table_name='employee_tags')
    op.drop_table('employee_tags')
