"""/v1 endpoints of report sharing and public badges (issue #24); the pages they open are
app/api/reports.py's."""

from __future__ import annotations

from flask import Response, g, request
from flask_openapi3 import APIBlueprint, Tag

from app.api.certifications import CertificationPath
from app.api.deps import deps, principal
from app.api.targets import TargetPath
from app.api.util import json_response, parse_id
from app.db.session import transaction
from app.schemas.reports import BadgeUpdate, BadgeView, ShareCreate, ShareList, SharePath, ShareView
from app.schemas.resources import Problem
from app.services import shares

tag = Tag(name="reports", description="Read-only report links and public badges")
bp = APIBlueprint("sharing", __name__, abp_tags=[tag], abp_security=[{"bearer": []}])


def _base() -> str:
    return request.host_url.rstrip("/")


@bp.post(
    "/v1/certifications/<certification_id>/share",
    operation_id="createShare",
    responses={201: ShareView, 401: Problem, 404: Problem, 422: Problem},
)
def create_share(path: CertificationPath) -> Response:
    """A read-only link to the certification's report for someone outside the organization:
    signed, no token in it, expiring (`expires_in_hours`, default 7 days) and revocable. The
    body is optional."""
    cert_id = parse_id(path.certification_id, "certification")
    body = ShareCreate.model_validate(g.get("json_body") or {})
    d = deps()
    with transaction(d.factory) as session:
        view = shares.create_share(
            session, d.settings, principal(), cert_id, body.expires_in_hours, _base()
        )
    return json_response(view, 201, {"Location": view.url})


@bp.get(
    "/v1/certifications/<certification_id>/shares",
    operation_id="listShares",
    responses={200: ShareList, 401: Problem, 404: Problem},
)
def list_shares(path: CertificationPath) -> Response:
    """The certification's share links, newest first, with their status."""
    cert_id = parse_id(path.certification_id, "certification")
    d = deps()
    with d.factory() as session:
        items = shares.list_shares(session, d.settings, principal(), cert_id, _base())
    return json_response(ShareList(items=items))


@bp.delete(
    "/v1/certifications/<certification_id>/shares/<share_id>",
    operation_id="revokeShare",
    responses={204: None, 401: Problem, 404: Problem},
)
def revoke_share(path: SharePath) -> Response:
    """Revoke a share link: it stops working at once (410 to whoever opens it)."""
    cert_id = parse_id(path.certification_id, "certification")
    share_id = parse_id(path.share_id, "share link")
    with transaction(deps().factory) as session:
        shares.revoke_share(session, principal(), cert_id, share_id)
    return Response(status=204)


@bp.get(
    "/v1/targets/<target_id>/badge",
    operation_id="getBadge",
    responses={200: BadgeView, 401: Problem, 404: Problem},
)
def get_badge(path: TargetPath) -> Response:
    """Whether the target's badge is public, and where it is."""
    target_id = parse_id(path.target_id, "target")
    with deps().factory() as session:
        return json_response(shares.get_badge(session, principal(), target_id, _base()))


@bp.put(
    "/v1/targets/<target_id>/badge",
    operation_id="setBadge",
    responses={200: BadgeView, 401: Problem, 404: Problem, 422: Problem},
)
def set_badge(path: TargetPath) -> Response:
    """Make the target's badge public (or private again): `{"public": true}`. A public badge
    shows anyone the verdict and valid-until of the target's current certificate (per
    `?suite=`), and links to a page that shows that certificate, verified."""
    target_id = parse_id(path.target_id, "target")
    with transaction(deps().factory) as session:
        # Another organization's target is a 404 whatever the body (validated after).
        shares.get_badge(session, principal(), target_id, _base())
        body = BadgeUpdate.model_validate(g.get("json_body"))
        view = shares.set_badge(session, principal(), target_id, body.public, _base())
    return json_response(view)
