"""samples: what the endpoint said of each reply, and the retries it took; live progress

Every sample records the reply's `finish_reason` ("length": cut by max_tokens), the token
`usage` the endpoint reported, the `served_model` the reply names (a server that answers
for any model name shows here), and the sample-level `retries` before its answer. The API's
evidence and the CLI's evidence.jsonl have one shape (app/certification/evidence.py).

certifications.progress_running: the samples finished in the check under way, written with
each lease renewal, so that progress moves while a long check runs (progress_done counts
the checks stored).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("samples", sa.Column("finish_reason", sa.String(32), nullable=True))
    op.add_column("samples", sa.Column("usage", postgresql.JSONB(), nullable=True))
    op.add_column("samples", sa.Column("served_model", sa.String(200), nullable=True))
    op.add_column(
        "samples", sa.Column("retries", sa.Integer(), nullable=False, server_default=sa.text("0"))
    )
    op.add_column(
        "certifications",
        sa.Column("progress_running", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("certifications", "progress_running")
    for column in ("retries", "served_model", "usage", "finish_reason"):
        op.drop_column("samples", column)
