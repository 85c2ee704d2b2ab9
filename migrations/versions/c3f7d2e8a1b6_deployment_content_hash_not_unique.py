"""deployment content hash not unique: the files of an earlier deployment may be deployed again

Revision ID: c3f7d2e8a1b6
Revises: b5e1a0c2d9f4
Create Date: 2026-12-07 01:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'c3f7d2e8a1b6'
down_revision = 'b5e1a0c2d9f4'
branch_labels = None
depends_on = None


def _deployment_table(unique: bool) -> sa.Table:
    return sa.Table(
        'deployment',
        sa.MetaData(),
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('deployed_by', sa.String(length=80), nullable=False),
        sa.Column('deployed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        *([sa.UniqueConstraint('content_hash')] if unique else []),
    )


def _rebuild_sqlite(unique: bool) -> None:
    """Copy, drop, rename: with foreign keys off (outside the transaction, where SQLite allows
    turning them off), since other tables' rows refer to deployments throughout."""
    with op.get_context().autocommit_block():
        op.execute('PRAGMA foreign_keys = OFF')
        try:
            with op.batch_alter_table('deployment', copy_from=_deployment_table(unique), recreate='always'):
                pass
        finally:
            op.execute('PRAGMA foreign_keys = ON')


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        # SQLite's constraint has no name: rebuild the table without it
        _rebuild_sqlite(unique=False)
    else:
        op.drop_constraint('deployment_content_hash_key', 'deployment', type_='unique')
    op.create_index(op.f('ix_deployment_content_hash'), 'deployment', ['content_hash'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_deployment_content_hash'), table_name='deployment')
    if op.get_bind().dialect.name == 'sqlite':
        _rebuild_sqlite(unique=True)
    else:
        op.create_unique_constraint('deployment_content_hash_key', 'deployment', ['content_hash'])
