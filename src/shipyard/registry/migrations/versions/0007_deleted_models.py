"""A deleted model keeps its row, marked deleted, so its version numbers are never given again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # the schema before this one has no place for a deleted model: its row goes (its history stays)
    op.execute(sa.text("DELETE FROM models WHERE deleted_at IS NOT NULL"))
    with op.batch_alter_table("models") as batch:
        batch.drop_column("deleted_at")
