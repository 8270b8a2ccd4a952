"""Chaos: kill -9 workers, restart Redis and Postgres; nothing is lost or duplicated.

The short run is part of `make test`; `make chaos` runs the long one (CHAOS_JOBS, default 2000).
"""

from __future__ import annotations

import os

import pytest

from tests.support.chaos import run_chaos


def check(report) -> None:  # type: ignore[no-untyped-def]
    print("\n" + report.line())
    assert report.missing == 0
    assert report.not_terminal == 0, report.line()
    assert report.duplicate_results == 0 and report.duplicate_samples == 0
    assert report.multiple_dead_letters == 0
    assert (
        report.succeeded + report.failed + report.timed_out + report.cancelled == report.submitted
    )
    assert report.worker_kills >= 1


def test_chaos_short(tmp_path, reference_url) -> None:  # type: ignore[no-untyped-def]
    check(
        run_chaos(
            tmp_path,
            reference_url,
            jobs=int(os.environ.get("CHAOS_SHORT_JOBS", 200)),
            deadline_seconds=300,
        )
    )


@pytest.mark.chaos
def test_chaos_long(tmp_path, reference_url) -> None:  # type: ignore[no-untyped-def]
    check(
        run_chaos(
            tmp_path,
            reference_url,
            jobs=int(os.environ.get("CHAOS_JOBS", 2000)),
            kill_every=5.0,
            deadline_seconds=3600,
        )
    )
