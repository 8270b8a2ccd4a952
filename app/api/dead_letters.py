"""/v1/dead-letters"""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from app.api.deps import deps, principal
from app.api.util import json_response, parse_id
from app.schemas.operations import DeadLetterList, ReplayView
from app.schemas.resources import PageQuery, Problem
from app.services import control, dead_letters

tag = Tag(name="dead-letters", description="Jobs that ran out of attempts; replayable")
bp = APIBlueprint(
    "dead_letters",
    __name__,
    url_prefix="/v1/dead-letters",
    abp_tags=[tag],
    abp_security=[{"bearer": []}],
)


class DeadLetterPath(BaseModel):
    dead_letter_id: str


@bp.get(
    "", operation_id="listDeadLetters", responses={200: DeadLetterList, 401: Problem, 422: Problem}
)
def list_dead_letters(query: PageQuery) -> Response:
    with deps().factory() as session:
        items, cursor = dead_letters.list_dead_letters(
            session, principal(), query.cursor, query.limit
        )
    return json_response(DeadLetterList(items=items, next_cursor=cursor))


@bp.post(
    "/<dead_letter_id>/replay",
    operation_id="replayDeadLetter",
    responses={202: ReplayView, 401: Problem, 404: Problem, 409: Problem},
)
def replay_dead_letter(path: DeadLetterPath) -> Response:
    """Re-queue the certification with a fresh attempt budget; a second replay is a 409."""
    letter_id = parse_id(path.dead_letter_id, "dead letter")
    d = deps()
    cert_id = control.replay_dead_letter(
        d.factory, d.settings, d.publisher.publish_run, principal(), letter_id
    )
    return json_response(
        ReplayView(dead_letter_id=letter_id, certification_id=cert_id, status="queued"),
        202,
        {"Location": f"/v1/certifications/{cert_id}"},
    )
