"""Secret redaction: the one function that keeps an endpoint's credential out of everything
we store, send or log (evidence, errors, webhook bodies, log lines).

An endpoint may reflect the key it was sent, and not always verbatim: JSON-escaped (`\\/`),
URL-encoded, base64 (alone, or inside `base64("Bearer <key>")` at any alignment), hex, in
part, or cut where a response excerpt or an error message was truncated. So a value is
replaced wherever it appears in any of those forms, every run of MIN_RUN or more characters
of any form is replaced too, and so is a text's tail that is the start of a form (what a cut
leaves). Fragments shorter than MIN_EDGE characters at a cut edge, and runs shorter than
MIN_RUN inside a text, are not recognised: they say little about a long random key, and
matching them would blank ordinary words.

Callers redact before they truncate: the engine scrubs every text it takes from a response
of the job's credential before it cuts it to an excerpt or an error message
(providers.base.scrub); the tail rule is for any other cut.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
MIN_SECRET = 4  # shorter values would blank common words
MIN_RUN = 12
MIN_EDGE = 4
_PROBE = MIN_RUN // 2  # any run of MIN_RUN holds an aligned block of this many characters
_CUT_MARKS = "…. \n\t"


def _base64_cores(raw: bytes) -> set[str]:
    """What every base64 text that contains `raw` at some byte alignment contains: for each
    of the three alignments, the encoding without the groups the neighbouring bytes share."""
    cores = set()
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + raw).decode().rstrip("=")
        # Whole groups only: the first shares its bytes with what precedes when shifted, a
        # last partial one with what follows.
        core = encoded[4 if shift else 0 : 4 * ((shift + len(raw)) // 3)]
        if len(core) >= _PROBE:
            cores.add(core)
    return cores | {c.replace("+", "-").replace("/", "_") for c in cores}


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def forms(secret: str) -> tuple[str, ...]:
    """The spellings of `secret` to look for, longest first."""
    raw = secret.encode()
    found = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    found |= {f.replace("/", "\\/") for f in found}  # JSON may escape the solidus
    for encoded in (quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret)):
        found |= {encoded, _lower_escapes(encoded)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        full = encode(raw).decode()
        found |= {full, full.rstrip("=")}
    found |= _base64_cores(raw)
    found |= {raw.hex(), raw.hex().upper()}
    return tuple(sorted((f for f in found if len(f) >= MIN_EDGE), key=len, reverse=True))


class Redactor:
    """Redaction of a fixed set of secrets (built once per set: see `redactor`)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.forms = tuple(sorted({f for s in secrets for f in forms(s)}, key=len, reverse=True))
        self.runs = frozenset(
            f[i : i + MIN_RUN] for f in self.forms for i in range(len(f) - MIN_RUN + 1)
        )
        self.probes = frozenset(
            run[i : i + _PROBE] for run in self.runs for i in range(MIN_RUN - _PROBE + 1)
        )
        self.heads = tuple(
            sorted(
                {f[:n] for f in self.forms for n in range(MIN_EDGE, min(len(f), MIN_RUN))},
                key=len,
                reverse=True,
            )
        )
        self.head_ends = frozenset(h[-MIN_EDGE:] for h in self.heads)

    def text(self, value: str) -> str:
        if not self.forms or len(value) < MIN_EDGE:
            return value
        for form in self.forms:
            if form in value:
                value = value.replace(form, REDACTED)
        value = self._runs(value)
        return self._tail(value)

    def _runs(self, value: str) -> str:
        """Replace every run of MIN_RUN or more characters of a form."""
        if len(value) < MIN_RUN or not any(
            value[i : i + _PROBE] in self.probes for i in range(0, len(value), _PROBE)
        ):
            return value  # no aligned block of any run: no run (the common case)
        covered = [False] * len(value)
        for i in range(len(value) - MIN_RUN + 1):
            if value[i : i + MIN_RUN] in self.runs:
                covered[i : i + MIN_RUN] = [True] * MIN_RUN
        out, i = [], 0
        while i < len(value):
            if covered[i]:
                while i < len(value) and covered[i]:
                    i += 1
                out.append(REDACTED)
            else:
                out.append(value[i])
                i += 1
        return "".join(out)

    def _tail(self, value: str) -> str:
        """A text that ends (before a cut mark) with the start of a form: what a cut left."""
        body = value.rstrip(_CUT_MARKS)
        if body[-MIN_EDGE:] not in self.head_ends:
            return value
        for head in self.heads:
            if body.endswith(head):
                return body[: -len(head)] + REDACTED + value[len(body) :]
        return value

    def obj(self, value: Any) -> Any:
        """Strings anywhere in a JSON-like value (keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.obj(k): self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value


@lru_cache(maxsize=64)
def redactor(secrets: tuple[str, ...]) -> Redactor:
    return Redactor(s for s in secrets if s and len(s) >= MIN_SECRET)


def redact(value: str | None, secrets: tuple[str, ...]) -> str | None:
    """`value` with every form of every secret replaced by REDACTED."""
    if value is None or not secrets:
        return value
    return redactor(secrets).text(value)


def redact_obj(value: Any, secrets: tuple[str, ...]) -> Any:
    return redactor(secrets).obj(value) if secrets else value


# Log lines: the secrets this process handled lately. A prefork child runs one job at a
# time; keeping the last few (not only the current job's) covers what is logged after a job
# let go of its key (a crash's traceback, logged by the task).
_RECENT: OrderedDict[str, None] = OrderedDict()
_RECENT_MAX = 16


def remember(secrets: Iterable[str | None]) -> None:
    """Redact these secrets from this process's log lines from now on."""
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET:
            _RECENT[secret] = None
            _RECENT.move_to_end(secret)
    while len(_RECENT) > _RECENT_MAX:
        _RECENT.popitem(last=False)


class RedactingFilter(logging.Filter):
    """A handler filter: the message, its arguments, the extra fields and the traceback of
    every record, redacted of the remembered secrets (free while there are none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _RECENT:
            return True
        secrets = tuple(_RECENT)
        r = redactor(secrets)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed format: keep what can be shown
            message = str(record.msg)
        record.msg, record.args = r.text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = r.text(record.exc_text)
        if record.stack_info:
            record.stack_info = r.text(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, (str, dict, list, tuple)):
                setattr(record, key, r.obj(value))
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
