"""Small helpers shared by the blueprints."""

from __future__ import annotations

import uuid

from flask import Response
from pydantic import BaseModel

from app.services.errors import NotFound


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    response = Response(model.model_dump_json(), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def parse_id(value: str, what: str) -> uuid.UUID:
    """Any non-UUID id is simply unknown: 404, like an unknown UUID."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError):
        raise NotFound(f"no such {what}") from None
