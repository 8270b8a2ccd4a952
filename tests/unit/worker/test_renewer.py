"""The lease renewer thread wakes for a job only when the job's first renewal is due before
the thread would look anyway (tests/reliability/test_lease_keeper.py runs it on real leases)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.support.polling import wait_for
from worker import lease


class CountingCondition(threading.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify_all(self) -> None:
        self.notified += 1
        super().notify_all()


@dataclass(eq=False)
class Keeper:
    """What the renewer uses of a LeaseKeeper: its interval and renew()."""

    interval: float
    renewals: list[float] = field(default_factory=list)

    def renew(self) -> bool:
        self.renewals.append(time.monotonic())
        return True


@pytest.fixture
def renewer() -> Iterator[lease._Renewer]:
    """A renewer of its own. Its thread lives on afterwards (daemon, idle): renamed, so
    tests that count the process's `lease-renewer` threads see only the real one."""
    mine = lease._Renewer()
    mine._cond = CountingCondition()
    yield mine
    if mine._thread is not None:
        mine._thread.name = "lease-renewer-of-a-test"


def test_a_job_due_after_the_idle_look_is_not_woken_for_and_still_renewed(
    renewer: lease._Renewer,
) -> None:
    first = Keeper(interval=0.05)
    renewer.watch(first)  # starts the thread: it looks at the due times before it waits
    assert wait_for(lambda: len(first.renewals) >= 2)
    renewer.unwatch(first)
    assert wait_for(lambda: renewer._wake_at > 0 and not renewer._due)  # idle, waiting
    before = renewer._cond.notified  # type: ignore[attr-defined]
    job = Keeper(interval=lease.IDLE_WAKE * 2)
    watched_at = time.monotonic()
    renewer.watch(job)
    assert renewer._cond.notified == before  # no wake-up call for it
    assert wait_for(lambda: len(job.renewals) >= 2)
    assert job.renewals[0] >= watched_at + job.interval  # renewed when due, not before
    assert job.renewals[1] >= job.renewals[0] + job.interval
    renewer.unwatch(job)


def test_a_job_due_before_the_idle_look_wakes_the_thread(renewer: lease._Renewer) -> None:
    renewer.watch(Keeper(interval=60))  # starts the thread; its next look is in 60 s
    assert wait_for(lambda: renewer._wake_at > time.monotonic() + 30)
    before = renewer._cond.notified  # type: ignore[attr-defined]
    soon = Keeper(interval=0.05)
    renewer.watch(soon)
    assert renewer._cond.notified == before + 1
    assert wait_for(lambda: len(soon.renewals) >= 1)  # long before the other one's 60 s
    renewer.unwatch(soon)
