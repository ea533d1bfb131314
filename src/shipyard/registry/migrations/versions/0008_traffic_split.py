"""An alias may divide the requests that name no version among several versions: a traffic split.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("aliases") as batch:
        batch.add_column(sa.Column("split", sa.JSON(), nullable=True))


def downgrade() -> None:
    # the schema before this one serves the alias's own version only: a split ends
    with op.batch_alter_table("aliases") as batch:
        batch.drop_column("split")
