"""suites: a team's own suites (issue #23), per organization, immutable name@version

The table existed unused since 0001; it gains its owner and its datasets, and its
uniqueness moves to (organization, name, version): the same version with other content is
a conflict, not a second row. The worker finds a job's suite by (organization, hash).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM suites")  # never written before this revision
    op.drop_constraint("uq_suites_name", "suites", type_="unique")
    op.add_column("suites", sa.Column("organization_id", sa.UUID(), nullable=False))
    op.add_column(
        "suites",
        sa.Column(
            "datasets",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.create_foreign_key(
        op.f("fk_suites_organization_id_organizations"),
        "suites",
        "organizations",
        ["organization_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_unique_constraint(
        op.f("uq_suites_organization_id"), "suites", ["organization_id", "name", "version"]
    )
    op.create_index(
        "ix_suites_organization_id_content_hash", "suites", ["organization_id", "content_hash"]
    )


def downgrade() -> None:
    op.execute("DELETE FROM suites")
    op.drop_index("ix_suites_organization_id_content_hash", table_name="suites")
    op.drop_constraint(op.f("uq_suites_organization_id"), "suites", type_="unique")
    op.drop_constraint(
        op.f("fk_suites_organization_id_organizations"), "suites", type_="foreignkey"
    )
    op.drop_column("suites", "datasets")
    op.drop_column("suites", "organization_id")
    op.create_unique_constraint(
        op.f("uq_suites_name"), "suites", ["name", "version", "content_hash"]
    )
