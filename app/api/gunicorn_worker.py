"""gunicorn's gthread worker, answering what gunicorn refuses by itself (a request line or
headers over its limits, a malformed request line, header or chunk) in problem+json like
every other error of the API, instead of gunicorn's HTML page.

The answer and the log line name the kind of error only: gunicorn's own messages quote the
request's bytes (the request line, the header), and neither a response nor a log line
repeats what a client sent.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

from gunicorn import util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from app.api.errors import PROBLEM_BASE

# (error, status, title, detail): the first match wins; any other ParseException is a 400.
_REFUSALS: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (
        http_errors.LimitRequestLine,
        414,
        "URI Too Long",
        "the request line is longer than the server accepts",
    ),
    (
        http_errors.LimitRequestHeaders,
        431,
        "Request Header Fields Too Large",
        "the request's headers are more or larger than the server accepts",
    ),
    (
        http_errors.UnsupportedTransferCoding,
        501,
        "Not Implemented",
        "the request's transfer coding is not supported",
    ),
    (
        http_errors.ExpectationFailed,
        417,
        "Expectation Failed",
        "the request's Expect header cannot be met",
    ),
    (http_errors.ForbiddenProxyRequest, 403, "Forbidden", "the proxy request is forbidden"),
    (http_errors.ConfigurationProblem, 500, "Internal Server Error", "the server is misconfigured"),
    # What the application sent is its fault, not the client's. (Both errors are gunicorn 27's:
    # types-gunicorn 26.2, the newest, does not declare them yet.)
    (
        http_errors.InvalidResponseHeader,  # type: ignore[attr-defined]
        500,
        "Internal Server Error",
        "an unexpected error occurred",
    ),
    (
        http_errors.InvalidResponseHeaderName,  # type: ignore[attr-defined]
        500,
        "Internal Server Error",
        "an unexpected error occurred",
    ),
    (http_errors.ParseException, 400, "Bad Request", "the request is not valid HTTP/1.1"),
    (ssl.SSLError, 400, "Bad Request", "the TLS handshake failed"),
)


def refusal(exc: BaseException) -> tuple[int, str, str] | None:
    """(status, title, detail) for an error gunicorn answers itself; None for any other."""
    for kind, status, title, detail in _REFUSALS:
        if isinstance(exc, kind):
            return status, title, detail
    return None


def problem_response(status: int, title: str, detail: str) -> bytes:
    body = json.dumps(
        {
            "type": PROBLEM_BASE + title.lower().replace(" ", "-"),
            "title": title,
            "status": status,
            "detail": detail,
            "instance": None,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {title}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class ProblemThreadWorker(ThreadWorker):
    """`worker_class` of `modelcert api`."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        known = refusal(exc)
        if known is None or known[0] == 500:
            # Not the client's fault: gunicorn logs it with its traceback.
            self.log.exception("Error handling request (%s)", type(exc).__name__)
            known = 500, "Internal Server Error", "an unexpected error occurred"
        else:
            self.log.warning("request refused by the server: %s %s", known[0], type(exc).__name__)
        try:
            util.write_nonblock(client, problem_response(*known))
        except Exception:  # noqa: BLE001 - the client is gone: nothing to answer
            self.log.debug("Failed to send error message.")
