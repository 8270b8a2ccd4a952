"""`dispatched_at` for the API's publishes, written in batches.

Each POST used to commit a second transaction only to record that its message was published.
The mark is bookkeeping for the sweeper ("published, do not publish again"), so the API now
queues it here and one background thread per process writes every pending mark in one UPDATE
about every `interval` seconds. What a batch costs when it goes wrong:

- the process dies before the flush: the row keeps `dispatched_at = NULL` and the sweeper
  publishes it again after its grace period; the claim drops the extra message (at most one
  duplicate message, never a lost job);
- Postgres is down at the flush: the marks wait (bounded by `max_pending`, oldest dropped
  first, with the same consequence as above) and are written at the next flush that works;
- a worker claimed the job before the flush: the claim set `dispatched_at` to its own time
  (a fallback); the batch puts the publish time back on that first attempt, and never
  touches a row that went back to the queue (its NULL is the sweeper's signal).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from app.db import jobs

log = logging.getLogger(__name__)


def mark_now(factory: sessionmaker[Session], cert_id: uuid.UUID) -> datetime:
    """The unbatched form, for callers without a DispatchMarks (scripts, tests)."""
    at = datetime.now(UTC)
    jobs.mark_published_at(factory, [(cert_id, at)])
    return at


def publish_then_mark(
    factory: sessionmaker[Session],
    publish: Callable[[uuid.UUID, str, str], bool],
    cert_id: uuid.UUID,
    queue: str,
    priority: str,
) -> bool:
    """After commit, never inside the transaction: publish, then mark it dispatched. False
    when the broker refused: the row is the outbox, and the sweeper publishes it later."""
    if not publish(cert_id, queue, priority):
        return False
    jobs.mark_published(factory, cert_id)
    return True


class DispatchMarks:
    def __init__(
        self, factory: sessionmaker[Session], *, interval: float = 0.1, max_pending: int = 50_000
    ) -> None:
        self.factory = factory
        self.interval = interval
        self._pending: deque[tuple[uuid.UUID, datetime]] = deque(maxlen=max_pending)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.dropped = 0  # marks pushed out by max_pending while Postgres was unreachable

    def mark(self, cert_id: uuid.UUID) -> datetime:
        """Record that `cert_id` was published now; returns the time that will be stored."""
        at = datetime.now(UTC)
        with self._lock:
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append((cert_id, at))
            self._ensure_thread()
        return at

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write every pending mark in one transaction; returns how many were sent."""
        with self._lock:
            batch = list(self._pending)
            self._pending.clear()
        if not batch:
            return 0
        try:
            jobs.mark_published_at(self.factory, batch)
        except Exception:  # noqa: BLE001 - keep them for the next flush; the sweeper backs us
            with self._lock:
                room = (self._pending.maxlen or 0) - len(self._pending)
                keep = batch[-room:] if room > 0 else []
                self.dropped += len(batch) - len(keep)
                self._pending.extendleft(reversed(keep))
            log.warning("dispatch_marks_flush_failed", exc_info=True, extra={"pending": len(batch)})
            return 0
        return len(batch)

    def close(self) -> None:
        """Stop the thread and write what is left (called at process exit)."""
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout=5)
        self.flush()

    def _ensure_thread(self) -> None:
        # Called with the lock held. A forked child (gunicorn) has no thread: start its own.
        if self._stopped or (
            self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()
        ):
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._loop, name="dispatch-marks", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _loop(self) -> None:
        while not self._stopped:
            self._wake.wait(self.interval)
            if self._stopped:
                return
            self.flush()
