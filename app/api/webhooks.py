"""/v1/webhooks"""

from __future__ import annotations

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from app.api.deps import deps, principal
from app.api.util import json_response, parse_id
from app.db.session import transaction
from app.schemas.operations import DeliveryList, WebhookCreate, WebhookCreated, WebhookList
from app.schemas.resources import PageQuery, Problem
from app.services import webhooks

tag = Tag(name="webhooks", description="Signed notifications of job outcomes")
bp = APIBlueprint(
    "webhooks", __name__, url_prefix="/v1/webhooks", abp_tags=[tag], abp_security=[{"bearer": []}]
)


class WebhookPath(BaseModel):
    webhook_id: str


@bp.post(
    "",
    operation_id="createWebhook",
    responses={201: WebhookCreated, 400: Problem, 401: Problem, 422: Problem},
)
def create_webhook(body: WebhookCreate) -> Response:
    """The signing secret is in this response only."""
    d = deps()
    with transaction(d.factory) as session:
        view = webhooks.create_webhook(session, d.settings, principal(), body)
    return json_response(view, 201, {"Location": f"/v1/webhooks/{view.id}"})


@bp.get("", operation_id="listWebhooks", responses={200: WebhookList, 401: Problem, 422: Problem})
def list_webhooks(query: PageQuery) -> Response:
    with deps().factory() as session:
        items, cursor = webhooks.list_webhooks(session, principal(), query.cursor, query.limit)
    return json_response(WebhookList(items=items, next_cursor=cursor))


@bp.delete(
    "/<webhook_id>", operation_id="deleteWebhook", responses={204: None, 401: Problem, 404: Problem}
)
def delete_webhook(path: WebhookPath) -> Response:
    webhook_id = parse_id(path.webhook_id, "webhook")
    with transaction(deps().factory) as session:
        webhooks.delete_webhook(session, principal(), webhook_id)
    return Response(status=204)


@bp.get(
    "/<webhook_id>/deliveries",
    operation_id="listWebhookDeliveries",
    responses={200: DeliveryList, 401: Problem, 404: Problem, 422: Problem},
)
def list_deliveries(path: WebhookPath, query: PageQuery) -> Response:
    webhook_id = parse_id(path.webhook_id, "webhook")
    with deps().factory() as session:
        items, cursor = webhooks.list_deliveries(
            session, principal(), webhook_id, query.cursor, query.limit
        )
    return json_response(DeliveryList(items=items, next_cursor=cursor))
