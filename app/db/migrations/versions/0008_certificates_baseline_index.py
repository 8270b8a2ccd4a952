"""certificates: an index for a job's baseline (the target's last certified certificate)

Every claim finds its job's baseline (app/db/baselines.py): the target's newest certified,
unrevoked certificate of the same suite issued before the job was created. With only the
target's index, that read every certified certificate the target ever had and sorted them, for
every job: a cost that grows with the target's history (the benchmark's e2e, one target and
thousands of jobs, spent twice the database CPU per job). Walked in issue order from the
newest, the first certificate of the job's suite ends the search.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_certificates_certified_by_issue",
        "certificates",
        ["target_id", sa.text("issued_at DESC"), sa.text("id DESC")],
        unique=False,
        postgresql_where=sa.text("certified AND revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_certificates_certified_by_issue", table_name="certificates")
