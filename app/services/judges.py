"""The judge models of a certification: a suite's `judge` graders name judges by logical
names; the request binds each to another target of the same organization (issue #23).

Checked when the certification is created (422 with the path, nothing stored), stored with
the job, and read again by the worker with the judge targets' secrets when it claims it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session, sessionmaker

from app.certification.checks.dataset import judges_named
from app.certification.engine import JobFailure
from app.certification.runner import JudgeEndpoint
from app.certification.suites import Suite
from app.db import jobs
from app.db.models import Secret, Target
from app.db.session import autocommit
from app.services.errors import InvalidField
from app.services.targets import target_spec


def bind(
    session: Session | Connection,
    organization_id: uuid.UUID,
    suite: Suite,
    judges: Mapping[str, uuid.UUID],
) -> dict[str, str]:
    """The job's `judges` column: every judge the suite names bound to a live target of the
    organization that has a base_url. InvalidField (422) naming the path otherwise."""
    needed = judges_named(suite.definition.checks)
    for name, checks in needed.items():
        if name not in judges:
            raise InvalidField(
                ["body", "judges"],
                f"check {checks[0]!r} of suite {suite.ref} is graded by judge {name!r}: bind "
                f'it to one of your targets ("judges": {{"{name}": TARGET_ID}})',
            )
    for name in judges:
        if name not in needed:
            named = ", ".join(sorted(needed)) or "none"
            raise InvalidField(
                ["body", "judges", name],
                f"suite {suite.ref} names no judge {name!r} (it names: {named})",
            )
    if not judges:
        return {}
    found = {
        row.id: row
        for row in session.execute(
            select(Target.id, Target.base_url).where(
                Target.id.in_(list(judges.values())),
                Target.organization_id == organization_id,
                Target.deleted_at.is_(None),
            )
        )
    }
    for name, target_id in judges.items():
        row = found.get(target_id)
        if row is None:
            raise InvalidField(["body", "judges", name], "no such target")
        if row.base_url is None:
            raise InvalidField(
                ["body", "judges", name],
                "the judge target has only per-region endpoints; a judge needs a base_url",
            )
    return {name: str(target_id) for name, target_id in sorted(judges.items())}


_JUDGE_COLUMNS = (
    Target.id,
    Target.provider,
    Target.model,
    Target.base_url,
    Target.endpoints,
    Target.capabilities,
    Target.rate_limit_rps,
    Target.max_concurrency,
    Target.secret_id,
    Target.deleted_at,
    Secret.ciphertext.label("secret_ciphertext"),
)


def load(
    factory: sessionmaker[Session],
    job_id: uuid.UUID,
    organization_id: uuid.UUID,
    suite: Suite,
    decrypt: Callable[[bytes], str],
) -> dict[str, JudgeEndpoint]:
    """The judge endpoints of a claimed job (none when its suite names no judge: no query).
    JobFailure when a judge is unbound or its target or secret is gone."""
    needed = judges_named(suite.definition.checks)
    if not needed:
        return {}
    with autocommit(factory) as conn:
        bound = jobs.judges_of(conn, job_id)
        ids = [uuid.UUID(str(v)) for v in bound.values()]
        rows = {row.id: row for row in _targets(conn, ids, organization_id)}
    endpoints = {}
    for name in needed:
        if name not in bound:
            raise JobFailure(
                "invalid_target", f"no target is bound to judge {name!r}", retryable=False
            )
        row = rows.get(uuid.UUID(str(bound[name])))
        if row is None or row.deleted_at is not None:
            raise JobFailure(
                "invalid_target", f"the target of judge {name!r} was deleted", retryable=False
            )
        api_key = None
        if row.secret_id is not None:
            if row.secret_ciphertext is None:
                raise JobFailure(
                    "invalid_target",
                    f"the secret of judge {name!r}'s target was deleted",
                    retryable=False,
                )
            api_key = decrypt(row.secret_ciphertext)
        endpoints[name] = JudgeEndpoint(target_spec(row, None), api_key)
    return endpoints


def _targets(conn: Connection, ids: list[uuid.UUID], organization_id: uuid.UUID) -> list[Any]:
    if not ids:
        return []
    return list(
        conn.execute(
            select(*_JUDGE_COLUMNS)
            .outerjoin(Secret, Secret.id == Target.secret_id)
            .where(Target.id.in_(ids), Target.organization_id == organization_id)
        )
    )
