"""/v1/targets"""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from app.api.deps import deps, principal
from app.api.util import json_response, parse_id
from app.db.session import transaction
from app.schemas.resources import (
    PageQuery,
    Problem,
    TargetCreate,
    TargetList,
    TargetUpdate,
    TargetView,
)
from app.services import target_changes, targets

tag = Tag(name="targets", description="Model endpoints to certify")
bp = APIBlueprint(
    "targets", __name__, url_prefix="/v1/targets", abp_tags=[tag], abp_security=[{"bearer": []}]
)


class TargetPath(BaseModel):
    target_id: str


@bp.post(
    "",
    operation_id="createTarget",
    responses={201: TargetView, 400: Problem, 401: Problem, 409: Problem, 422: Problem},
)
def create_target(body: TargetCreate) -> Response:
    d = deps()
    with transaction(d.factory) as session:
        view = targets.create_target(
            session, principal(), body, allow_private=d.settings.modelcert_allow_private_targets
        )
    return json_response(view, 201, {"Location": f"/v1/targets/{view.id}"})


@bp.get("", operation_id="listTargets", responses={200: TargetList, 401: Problem, 422: Problem})
def list_targets(query: PageQuery) -> Response:
    with deps().factory() as session:
        items, cursor = targets.list_targets(session, principal(), query.cursor, query.limit)
    return json_response(TargetList(items=items, next_cursor=cursor))


@bp.get(
    "/<target_id>",
    operation_id="getTarget",
    responses={200: TargetView, 401: Problem, 404: Problem},
)
def get_target(path: TargetPath) -> Response:
    target_id = parse_id(path.target_id, "target")
    with deps().factory() as session:
        return json_response(targets.get_target(session, principal(), target_id))


@bp.patch(
    "/<target_id>",
    operation_id="updateTarget",
    responses={
        200: TargetView,
        400: Problem,
        401: Problem,
        404: Problem,
        409: Problem,
        422: Problem,
    },
)
def update_target(path: TargetPath, body: TargetUpdate) -> Response:
    """Rename, change capabilities (supersedes the target's certificates) or limits."""
    target_id = parse_id(path.target_id, "target")
    with transaction(deps().factory) as session:
        view = target_changes.update_target(session, principal(), target_id, body)
    return json_response(view)


@bp.delete(
    "/<target_id>", operation_id="deleteTarget", responses={204: None, 401: Problem, 404: Problem}
)
def delete_target(path: TargetPath) -> Response:
    """Soft delete: its certifications stay readable; it cannot be certified again."""
    target_id = parse_id(path.target_id, "target")
    with transaction(deps().factory) as session:
        target_changes.delete_target(session, principal(), target_id)
    return Response(status=204)
