"""/v1/secrets: endpoint credentials, write-only (metadata comes back, the value never)."""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from app.api.deps import deps, principal
from app.api.util import json_response, parse_id
from app.db.session import transaction
from app.schemas.resources import PageQuery, Problem, SecretCreate, SecretList, SecretView
from app.services import secrets

tag = Tag(name="secrets", description="Endpoint credentials, encrypted at rest, never returned")
bp = APIBlueprint(
    "secrets", __name__, url_prefix="/v1/secrets", abp_tags=[tag], abp_security=[{"bearer": []}]
)


class SecretPath(BaseModel):
    secret_id: str


@bp.post(
    "",
    operation_id="createSecret",
    responses={
        201: SecretView,
        400: Problem,
        401: Problem,
        409: Problem,
        413: Problem,
        422: Problem,
    },
)
def create_secret(body: SecretCreate) -> Response:
    d = deps()
    with transaction(d.factory) as session:
        view = secrets.create_secret(session, secrets.box_for(d.settings), principal(), body)
    return json_response(view, 201, {"Location": f"/v1/secrets/{view.id}"})


@bp.get("", operation_id="listSecrets", responses={200: SecretList, 401: Problem, 422: Problem})
def list_secrets(query: PageQuery) -> Response:
    with deps().factory() as session:
        items, cursor = secrets.list_secrets(session, principal(), query.cursor, query.limit)
    return json_response(SecretList(items=items, next_cursor=cursor))


@bp.get(
    "/<secret_id>",
    operation_id="getSecret",
    responses={200: SecretView, 401: Problem, 404: Problem},
)
def get_secret(path: SecretPath) -> Response:
    secret_id = parse_id(path.secret_id, "secret")
    with deps().factory() as session:
        return json_response(secrets.get_secret(session, principal(), secret_id))


@bp.delete(
    "/<secret_id>", operation_id="deleteSecret", responses={204: None, 401: Problem, 404: Problem}
)
def delete_secret(path: SecretPath) -> Response:
    """Targets that referenced it lose their credential (secret_id becomes null)."""
    secret_id = parse_id(path.secret_id, "secret")
    with transaction(deps().factory) as session:
        secrets.delete_secret(session, principal(), secret_id)
    return Response(status=204)
