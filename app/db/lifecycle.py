"""A certification job's statuses and the transitions between them: the one place that says
which status may follow which.

    queued ──claim──▶ running ──succeed──▶ succeeded
      ▲ │               │ │ ├──fail──────▶ failed
      │ │               │ │ ├──time_out──▶ timed_out
      │ │               │ │ └──stop──────▶ cancelled   (cancel requested while it ran)
      │ │  retrying ◀───┘ └─ retry_later / release / expire_lease
      │ │     │  └──claim──▶ running
      │ └─────┴──cancel──▶ cancelled,  ──exhaust──▶ failed  (out of attempts before running)
      └── requeue ◀── failed | timed_out | cancelled   (POST /retry, a dead letter's replay)

Every statement that moves a job takes its source statuses and its target from a Transition
here (in the jobs repository, app/db/jobs.py: one function per transition), and tests pin
the table
(tests/unit/db/test_lifecycle.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[JobStatus, ...]
    target: JobStatus


S = JobStatus
CLAIM = Transition("claim", (S.QUEUED, S.RETRYING), S.RUNNING)
SUCCEED = Transition("succeed", (S.RUNNING,), S.SUCCEEDED)
FAIL = Transition("fail", (S.RUNNING,), S.FAILED)
TIME_OUT = Transition("time_out", (S.RUNNING,), S.TIMED_OUT)
# The worker stops a running job whose cancel was requested, at a sample boundary.
STOP = Transition("stop", (S.RUNNING,), S.CANCELLED)
# Back to the queue: a retryable failure (after a backoff), a worker shutting down (the
# attempt does not count), a lease that expired (its worker died).
RETRY_LATER = Transition("retry_later", (S.RUNNING,), S.RETRYING)
RELEASE = Transition("release", (S.RUNNING,), S.RETRYING)
EXPIRE_LEASE = Transition("expire_lease", (S.RUNNING,), S.RETRYING)
# A lease expired on the last attempt: the job killed its worker max_attempts times.
EXPIRE_EXHAUSTED = Transition("expire_exhausted", (S.RUNNING,), S.FAILED)
# A waiting job cancelled at once; a waiting job out of attempts (dead-lettered).
CANCEL = Transition("cancel", (S.QUEUED, S.RETRYING), S.CANCELLED)
EXHAUST = Transition("exhaust", (S.QUEUED, S.RETRYING), S.FAILED)
# POST /v1/certifications/{id}/retry and a dead letter's replay: a new attempt.
REQUEUE = Transition("requeue", (S.FAILED, S.TIMED_OUT, S.CANCELLED), S.QUEUED)

TRANSITIONS = (
    CLAIM,
    SUCCEED,
    FAIL,
    TIME_OUT,
    STOP,
    RETRY_LATER,
    RELEASE,
    EXPIRE_LEASE,
    EXPIRE_EXHAUSTED,
    CANCEL,
    EXHAUST,
    REQUEUE,
)
INITIAL = S.QUEUED
TERMINAL_STATUSES = (S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.CANCELLED)
CLAIMABLE_STATUSES = CLAIM.sources
ACTIVE_STATUSES = (S.QUEUED, S.RUNNING, S.RETRYING)  # a job that has not ended
# The ends a worker writes for the job it holds (jobs.finish): each from `running`.
ENDINGS = {t.target: t for t in (SUCCEED, FAIL, TIME_OUT, STOP)}


def allowed(source: JobStatus, target: JobStatus) -> bool:
    """Whether a job may go from `source` to `target` in one step."""
    return any(source in t.sources and t.target is target for t in TRANSITIONS)


def ending(status: JobStatus) -> Transition:
    """The transition by which a running job ends in `status`; ValueError for any other."""
    try:
        return ENDINGS[status]
    except KeyError:
        raise ValueError(f"a running job cannot end as {status.value!r}") from None
