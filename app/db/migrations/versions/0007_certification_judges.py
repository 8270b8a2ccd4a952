"""certifications.judges: the judge models a job's suite names, bound to targets (issue #23)

A tenant suite's `judge` grader names a judge by a logical name; the certification request
binds each name to another target of the same organization. The binding is part of the job
(the worker reads the judge targets and their secrets by these ids when it claims it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "certifications",
        sa.Column(
            "judges",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("certifications", "judges")
