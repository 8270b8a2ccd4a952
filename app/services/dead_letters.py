"""Dead letters: jobs that ran out of attempts, listed per organization, replayable."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db import jobs
from app.db.models import DeadLetter
from app.schemas.operations import DeadLetterView
from app.services.auth import Principal
from app.services.pagination import page


def to_view(row: DeadLetter) -> DeadLetterView:
    return DeadLetterView(
        id=row.id,
        certification_id=row.certification_id,
        cause=row.cause,
        last_error=row.last_error,
        attempts=row.attempts,
        created_at=row.created_at,
        replayed_at=row.replayed_at,
    )


def list_dead_letters(
    session: Session, who: Principal, cursor: str | None, limit: int
) -> tuple[list[DeadLetterView], str | None]:
    query = jobs.dead_letters_of(who.organization_id)
    rows, next_cursor = page(session, query, DeadLetter, cursor, limit)
    return [to_view(r) for r in rows], next_cursor
