"""The job state machine (app/db/lifecycle.py): the table every job statement follows."""

from __future__ import annotations

import pytest

from app.db import lifecycle
from app.db.lifecycle import JobStatus as S


def test_every_status_is_reachable_from_queued() -> None:
    seen, frontier = {lifecycle.INITIAL}, [lifecycle.INITIAL]
    while frontier:
        source = frontier.pop()
        for target in S:
            if lifecycle.allowed(source, target) and target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(S)


def test_a_terminal_status_only_leaves_by_a_requeue() -> None:
    for status in lifecycle.TERMINAL_STATUSES:
        leaving = [t for t in lifecycle.TRANSITIONS if status in t.sources]
        assert leaving in ([], [lifecycle.REQUEUE]), status
    assert not [t for t in lifecycle.TRANSITIONS if S.SUCCEEDED in t.sources]


@pytest.mark.parametrize(
    ("source", "target", "ok"),
    [
        (S.QUEUED, S.RUNNING, True),
        (S.RETRYING, S.RUNNING, True),
        (S.RUNNING, S.RUNNING, False),  # a second claim of a running job is never allowed
        (S.SUCCEEDED, S.RUNNING, False),
        (S.QUEUED, S.SUCCEEDED, False),  # only a running job ends with a verdict
        (S.RUNNING, S.RETRYING, True),
        (S.CANCELLED, S.QUEUED, True),
        (S.SUCCEEDED, S.QUEUED, False),
    ],
)
def test_allowed(source: S, target: S, ok: bool) -> None:
    assert lifecycle.allowed(source, target) is ok


def test_a_running_job_ends_in_one_of_four_ways() -> None:
    assert set(lifecycle.ENDINGS) == set(lifecycle.TERMINAL_STATUSES)
    assert all(t.sources == (S.RUNNING,) for t in lifecycle.ENDINGS.values())
    with pytest.raises(ValueError, match="cannot end as 'retrying'"):
        lifecycle.ending(S.RETRYING)
