"""The event loop a worker process's jobs run on, one after another (each of its threads
its own)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class JobLoop:
    """The event loop the jobs of this process (of each of its threads) run on, one after
    another.

    asyncio.run per job built and tore down a loop each time (its selector, self-pipe, signal
    checks and default executor, whose thread runs DNS lookups): about a tenth of a short
    job's CPU. Each job still opens and closes its own HTTP session; what a job leaves behind
    (tasks not awaited) is cancelled when it ends, and a job that ends by an exception (the
    soft time limit, a bug) takes the loop with it: the next job starts on a fresh one.
    """

    def __init__(self) -> None:
        self._mine = threading.local()

    def forget(self) -> None:  # in a forked child: the parent's selector is not ours to use
        self._mine = threading.local()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop()
        try:
            return loop.run_until_complete(coro)
        except BaseException:
            self._mine.loop = None
            with contextlib.suppress(Exception):  # the job's own exception is the one to see
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            raise
        finally:
            if getattr(self._mine, "loop", None) is loop:
                _cancel_all(loop)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """This thread's loop; a fresh one when it has none or the last job took it down."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._mine, "loop", None)
        if loop is None or loop.is_closed():
            loop = asyncio.new_event_loop()
            self._mine.loop = loop
        return loop


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio.run's clean-up: cancel the loop's tasks and let them finish."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


JOB_LOOP = JobLoop()
os.register_at_fork(after_in_child=JOB_LOOP.forget)
