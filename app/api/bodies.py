"""Request bodies: the size limit on the bytes actually sent, then JSON that the database can
store. Each refusal is a problem+json answer, never a 500, and quotes no request value.

- Framing: a chunked body has no Content-Length, and werkzeug then reads at most
  MAX_CONTENT_LENGTH bytes and silently stops: a body over the limit was cut and accepted.
  `BodyLimit` reads such a body itself, up to one byte past the limit, so the size check
  below sees how much was sent whatever the framing.
- Nesting: Python's JSON parser recurses per level and raises RecursionError near 1,000
  levels; no request of this API nests beyond a few, so anything deeper than MAX_DEPTH is
  refused.
- NUL: PostgreSQL text cannot hold U+0000 (JSON may spell it \\u0000); such a string would
  fail at INSERT, so it is refused here, naming the field.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import request

from app.api.errors import ProblemError

MAX_DEPTH = 32
OVER_LIMIT = "modelcert.body_over_limit"  # WSGI environ key set by BodyLimit


class BodyLimit:
    """WSGI middleware: read a body sent without Content-Length (chunked) up to `max_bytes`
    + 1, and hand it on with its Content-Length, so the limit holds for the bytes sent."""

    def __init__(self, app: Callable[..., Iterable[bytes]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if not environ.get("CONTENT_LENGTH") and environ.get("HTTP_TRANSFER_ENCODING"):
            # gunicorn decodes the chunks and ends the stream (wsgi.input_terminated); read
            # one byte more than allowed to know whether the body is over the limit.
            body = environ["wsgi.input"].read(self.max_bytes + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            if len(body) > self.max_bytes:
                environ[OVER_LIMIT] = True
        return self.app(environ, start_response)


def too_large(max_bytes: int) -> ProblemError:
    return ProblemError(
        413,
        "payload-too-large",
        "Payload too large",
        f"the body exceeds the limit of {max_bytes} bytes (API_MAX_BODY_BYTES)",
    )


def read_json_body(max_bytes: int) -> Any:
    """The request's JSON document (None for an empty body), or a ProblemError."""
    length = request.content_length
    if request.environ.get(OVER_LIMIT) or (length is not None and length > max_bytes):
        raise too_large(max_bytes)
    raw = request.get_data(cache=True)
    if len(raw) > max_bytes:
        raise too_large(max_bytes)
    if not raw:
        return None
    if request.mimetype != "application/json":
        raise ProblemError(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as application/json",
        )
    try:
        document = json.loads(raw)
    except RecursionError:
        raise nested_too_deeply() from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError(
            400, "malformed-json", "Malformed JSON", f"the body is not valid JSON: {exc}"[:300]
        ) from None
    refuse_unstorable(document)
    return document


def nested_too_deeply() -> ProblemError:
    return ProblemError(
        400, "malformed-json", "Malformed JSON", f"the body nests deeper than {MAX_DEPTH} levels"
    )


def refuse_unstorable(document: Any) -> None:
    """Walk the document (without recursion): too deep -> 400; a NUL in any key or string
    value -> 422 naming the first such field."""
    stack: list[tuple[Any, list[str | int]]] = [(document, ["body"])]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_DEPTH + 1:
            raise nested_too_deeply()
        if isinstance(value, str):
            if "\x00" in value:
                raise nul_in(loc)
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\x00" in key:
                    raise nul_in(loc)
                stack.append((item, [*loc, key]))
        elif isinstance(value, list):
            stack.extend((item, [*loc, index]) for index, item in enumerate(value))


def nul_in(loc: list[str | int]) -> ProblemError:
    message = "must not contain the NUL character (U+0000)"
    return ProblemError(
        422,
        "validation-error",
        "Request is invalid",
        f"{'.'.join(map(str, loc[1:])) or 'the body'} {message}",
        [{"loc": loc, "msg": message}],
    )
