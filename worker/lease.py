"""Lease keeping for the jobs this worker process runs: one thread renews every job's lease
when it is due, writes its live progress, and notices a cancel or a lost claim."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.db import jobs

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LeaseKeeper:
    """Renews a job's lease every few seconds and notices a cancel or a lost claim.

    The renewals run on one thread per process (`_Renewer`), not one per job: starting and
    joining a thread per job cost about 1 ms of wall time on a busy 2-core machine, a tenth
    of a short job. After stop() returns, no renewal of this job will start, and one under
    way has ended (or hung on the database for 5 s).
    """

    factory: sessionmaker[Session]
    claim: jobs.Claim
    lease_seconds: int
    interval: float = 2.0
    cancel_requested: bool = False
    lost: bool = False
    # Samples finished in the check under way (the engine's thread counts, the renewal
    # thread reads: a plain int is enough, a renewal a moment stale is harmless).
    running: int = 0

    def sample_done(self) -> None:
        self.running += 1

    def check_done(self) -> None:
        self.running = 0

    def start(self) -> None:
        _RENEWER.watch(self)

    def stop(self) -> None:
        _RENEWER.unwatch(self)

    def renew(self) -> bool:
        """One renewal; False when there is nothing more to renew (lost or cancelled)."""
        try:
            ours, cancel = jobs.renew_lease(
                self.factory, self.claim, self.lease_seconds, self.running
            )
        except Exception:  # noqa: BLE001 - a DB blip: the lease has slack, try again
            log.warning("lease_renewal_failed", exc_info=True)
            return True
        self.lost = not ours
        self.cancel_requested = cancel
        return not (self.lost or cancel)


IDLE_WAKE = 0.5  # seconds; below any lease interval a job normally uses (2 s)


class _Renewer:
    """The thread that renews the leases of the jobs this process runs, each when it is due."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:  # also in a forked child: the parent's thread and lock stay there
        self._cond = threading.Condition()
        self._due: dict[LeaseKeeper, float] = {}
        self._renewing: LeaseKeeper | None = None
        self._thread: threading.Thread | None = None
        # When the thread next looks at the due times (it is busy or starting: no later
        # than now). A job whose first renewal is due after that needs no wake-up call.
        self._wake_at = 0.0

    def watch(self, keeper: LeaseKeeper) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="lease-renewer", daemon=True
                )
                self._wake_at = 0.0  # it looks at the due times before it first waits
                self._thread.start()
            due = time.monotonic() + keeper.interval
            self._due[keeper] = due
            if due < self._wake_at:  # else the thread looks at the due times sooner anyway
                self._cond.notify_all()

    def unwatch(self, keeper: LeaseKeeper, timeout: float = 5.0) -> None:
        """Stops renewing; waits (up to `timeout`: a hung database) for a renewal under way."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._due.pop(keeper, None)
            while self._renewing is keeper and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def _loop(self) -> None:
        while True:
            with self._cond:
                keeper = self._next_due()
                self._renewing = keeper
            keep = keeper.renew()
            with self._cond:
                self._renewing = None
                if keeper in self._due:
                    if keep:
                        self._due[keeper] = time.monotonic() + keeper.interval
                    else:
                        del self._due[keeper]
                self._cond.notify_all()

    def _next_due(self) -> LeaseKeeper:
        """Waits (holding the condition) until a watched job's renewal is due. With nothing
        watched it still looks every IDLE_WAKE seconds, so a job that starts (its first
        renewal due an interval later) need not wake it: on a busy worker that wake-up, a
        thread switch per job, cost more than the rest of the lease keeping."""
        while True:
            now = time.monotonic()
            if self._due:
                keeper, due = min(self._due.items(), key=lambda item: item[1])
                if due <= now:
                    self._wake_at = 0.0
                    return keeper
                self._wake_at = due
                self._cond.wait(due - now)
            else:
                self._wake_at = now + IDLE_WAKE
                self._cond.wait(IDLE_WAKE)


_RENEWER = _Renewer()
os.register_at_fork(after_in_child=_RENEWER._reset)


def keeper_for(
    factory: sessionmaker[Session], lease_seconds: int
) -> Callable[[jobs.Claim], LeaseKeeper]:
    """What run.RunHooks.lease takes: a keeper for each claim, renewing well within the
    lease (every 2 s, or a third of a shorter lease)."""
    interval = min(2.0, lease_seconds / 3)

    def keeper(claim: jobs.Claim) -> LeaseKeeper:
        return LeaseKeeper(factory, claim, lease_seconds, interval=interval)

    return keeper
