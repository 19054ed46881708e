"""conversations

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("conversations",
                    sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("title", sa.Text, nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()))


def downgrade() -> None:
    op.drop_table("conversations")
