"""/v1/certifications"""

from __future__ import annotations

from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel

from app.api.deps import (
    PREFETCH_TARGET,
    SHARED_AUTH_TRANSACTION,
    Deps,
    auth_session,
    deps,
    job_target,
    principal,
)
from app.api.util import json_response, parse_id
from app.schemas.resources import (
    CertificationCreate,
    CertificationFilter,
    CertificationList,
    CertificationView,
    Problem,
)
from app.services import certifications, control
from app.services.errors import InvalidField

tag = Tag(name="certifications", description="Certification jobs and their results")
bp = APIBlueprint(
    "certifications",
    __name__,
    url_prefix="/v1/certifications",
    abp_tags=[tag],
    abp_security=[{"bearer": []}],
)


class CertificationPath(BaseModel):
    certification_id: str


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isprintable():
        raise InvalidField(["header", "Idempotency-Key"], "must be 1 to 255 printable characters")
    return key


@bp.post(
    "",
    operation_id="createCertification",
    responses={
        202: CertificationView,
        400: Problem,
        401: Problem,
        404: Problem,
        409: Problem,
        413: Problem,
        422: Problem,
    },
)
def create_certification(body: CertificationCreate) -> Response:
    """Queue a certification; Idempotency-Key makes a retried POST return the same job.

    409: a concurrent request with the same key failed (retry it)."""
    d = deps()
    view, replayed = certifications.create_certification(
        d.factory,
        d.settings,
        d.publisher.publish_run,
        principal(),
        body,
        idempotency_key(),
        mark_dispatched=d.dispatch.mark,
        session=auth_session(),
        target=job_target(),
    )
    headers = {"Location": f"/v1/certifications/{view.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(view, 202, headers)


SHARED_AUTH_TRANSACTION.add(f"{bp.name}.{create_certification.__name__}")
PREFETCH_TARGET.add(f"{bp.name}.{create_certification.__name__}")


@bp.get(
    "",
    operation_id="listCertifications",
    responses={200: CertificationList, 401: Problem, 422: Problem},
)
def list_certifications(query: CertificationFilter) -> Response:
    with deps().factory() as session:
        items, cursor = certifications.list_certifications(session, principal(), query)
    return json_response(CertificationList(items=items, next_cursor=cursor))


@bp.get(
    "/<certification_id>",
    operation_id="getCertification",
    responses={200: CertificationView, 401: Problem, 404: Problem},
)
def get_certification(path: CertificationPath) -> Response:
    cert_id = parse_id(path.certification_id, "certification")
    with deps().factory() as session:
        return json_response(certifications.get_certification(session, principal(), cert_id))


@bp.post(
    "/<certification_id>/cancel",
    operation_id="cancelCertification",
    responses={
        200: CertificationView,
        202: CertificationView,
        401: Problem,
        404: Problem,
        409: Problem,
    },
)
def cancel_certification(path: CertificationPath) -> Response:
    """Queued: cancelled at once (200). Running: stops at the next sample boundary (202)."""
    cert_id = parse_id(path.certification_id, "certification")
    d = deps()
    view, now = control.cancel(d.factory, principal(), cert_id)
    if now:
        events_dispatch(d)
    return json_response(view, 200 if now else 202)


@bp.post(
    "/<certification_id>/retry",
    operation_id="retryCertification",
    responses={202: CertificationView, 401: Problem, 404: Problem, 409: Problem},
)
def retry_certification(path: CertificationPath) -> Response:
    """Start a new attempt of a failed, timed_out or cancelled certification."""
    cert_id = parse_id(path.certification_id, "certification")
    d = deps()
    view = control.retry(d.factory, d.settings, d.publisher.publish_run, principal(), cert_id)
    return json_response(view, 202, {"Location": f"/v1/certifications/{view.id}"})


def events_dispatch(d: Deps) -> None:
    """Publish the webhook deliveries the cancel recorded (the sweeper repairs a failure)."""
    from app.services.events import dispatch_pending

    dispatch_pending(d.factory, d.publisher.publish_delivery)
