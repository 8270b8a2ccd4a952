"""certificates: a `certified` flag and a partial index over the current certified ones

The finish of every job looks up the target's current certified certificates (to supersede
those of another fingerprint or of the same suite). Filtering on the payload's verdict made
that an index scan over every certificate the target ever had that was not superseded —
non-certified ones never are —, 3.7 ms at 10,000 (bench/README.md). The flag is set from the
payload's verdict (the payload never changes); the partial index holds only certificates
that can count as current.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "certificates",
        sa.Column("certified", sa.Boolean(), nullable=False, server_default=sa.text("false")),
    )
    op.execute(
        "UPDATE certificates SET certified = (payload ->> 'verdict') "
        "IN ('certified', 'certified_with_warnings')"
    )
    op.create_index(
        "ix_certificates_current",
        "certificates",
        ["target_id"],
        unique=False,
        postgresql_where=sa.text("certified AND superseded_at IS NULL AND revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_certificates_current", table_name="certificates")
    op.drop_column("certificates", "certified")
