"""targets: drop region_queues, queue names are the operator's now (issue #22)

A target's `region_queues` let a tenant name the Redis key a job was published to, and a
name like `unacked_index` stopped every worker on that Redis. Regions now map to queues in
CERTIFICATION_REGION_QUEUES; this release neither reads nor writes the column.

A contract step: the previous release reads the column, so roll the new api, worker and beat
out before this runs (docs/operations.md, "Upgrading"). DROP COLUMN only changes the catalog
(no table rewrite); its ACCESS EXCLUSIVE lock waits at most env.py's lock_timeout (10 s) and
then fails, so a busy table is retried, never queued behind. The downgrade restores the column
as 0001 made it, empty: the names it held are not restored (and must not be).

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
    op.drop_column("targets", "region_queues")


def downgrade() -> None:
    op.add_column("targets", sa.Column(
        "region_queues", postgresql.JSONB(astext_type=sa.Text()),
        server_default=sa.text("'{}'::jsonb"), nullable=False))
