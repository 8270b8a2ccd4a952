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
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.db.session import transaction

log = logging.getLogger(__name__)

# Fill rows not claimed yet (or cancelled while queued); and where the first claim came before
# the batch (its fallback `coalesce(dispatched_at, now())` wrote the claim time), put the real
# publish time back. Never touch a row put back in the queue: a released job is `retrying` at
# attempt 0 again, a failed one `retrying` at 1, both with dispatched_at NULL for the sweeper.
# Rows a worker holds (claiming, finishing) are skipped, not waited for: the claim writes
# its own time there, and a batch must never queue behind (or in front of) a job.
# The rows are locked once, in a MATERIALIZED CTE: as a subquery of the UPDATE, a planner
# that thought the table tiny (a fresh one, not analyzed yet) re-ran it, locking the batch's
# rows again, for every row it scanned: 10-60 ms of Postgres per batch in bench e2e.
MARK_SQL = text(
    "WITH locked AS MATERIALIZED (SELECT id FROM certifications "
    "WHERE id = ANY(CAST(:ids AS uuid[])) FOR UPDATE SKIP LOCKED) "
    "UPDATE certifications AS c SET dispatched_at = m.at "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:ats AS timestamptz[])) AS m(id, at) "
    "WHERE c.id = m.id AND c.id IN (SELECT id FROM locked) "
    "AND ((c.attempt = 0 AND c.status IN ('queued', 'cancelled') "
    "AND c.dispatched_at IS NULL) "
    "OR (c.attempt = 1 AND c.status NOT IN ('queued', 'retrying') "
    "AND c.dispatched_at > m.at))"
)
# A batch is a few dozen rows found by primary key, whatever the table's statistics say:
# a fresh table not analyzed yet looks like one page to the planner, which then scans it
# all (twice per batch) as it grows, 5 ms a batch a few thousand jobs in (bench e2e).
INDEX_ONLY = text("SET LOCAL enable_seqscan = off")


def _mark(session: Session, batch: list[tuple[uuid.UUID, datetime]]) -> None:
    session.execute(INDEX_ONLY)
    session.execute(MARK_SQL, {"ids": [str(i) for i, _ in batch], "ats": [at for _, at in batch]})


def mark_now(factory: sessionmaker[Session], cert_id: uuid.UUID) -> datetime:
    """The unbatched form, for callers without a DispatchMarks (scripts, tests)."""
    at = datetime.now(UTC)
    with transaction(factory) as session:
        _mark(session, [(cert_id, at)])
    return at


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
            with transaction(self.factory) as session:
                _mark(session, batch)
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
