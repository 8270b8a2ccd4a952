"""The per-process event loop the worker's jobs run on (job_loop.JobLoop): reused while jobs end
normally, nothing a job leaves behind survives it, and a job that raises takes the loop along."""

from __future__ import annotations

import asyncio
import os

import pytest

from worker.job_loop import JobLoop


async def current_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_jobs_share_the_loop_and_leftover_tasks_are_cancelled() -> None:
    jobs = JobLoop()
    left: list[asyncio.Task[None]] = []

    async def job_leaving_a_task() -> asyncio.AbstractEventLoop:
        left.append(asyncio.ensure_future(asyncio.sleep(3600)))
        return asyncio.get_running_loop()

    first = jobs.run(job_leaving_a_task())
    assert left[0].cancelled()  # cancelled when its job ended, not when the next one runs
    assert jobs.run(current_loop()) is first and not first.is_closed()
    assert asyncio.all_tasks(first) == set()
    first.close()


def test_a_job_that_raises_takes_its_loop_along() -> None:
    jobs = JobLoop()
    first = jobs.run(current_loop())
    left: list[asyncio.Task[None]] = []

    async def failing() -> None:
        left.append(asyncio.ensure_future(asyncio.sleep(3600)))
        raise LookupError("the job's own error")

    with pytest.raises(LookupError, match="own error"):
        jobs.run(failing())
    assert first.is_closed() and left[0].cancelled()
    second = jobs.run(current_loop())
    assert second is not first and not second.is_closed()
    second.close()


def test_a_forked_child_starts_its_own_loop() -> None:
    jobs = JobLoop()
    parent = jobs.run(current_loop())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's loop must not be used here
        try:
            jobs.forget()
            child = jobs.run(current_loop())
            os.write(write, b"1" if child is not parent else b"0")
        finally:
            os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert jobs.run(current_loop()) is parent
    parent.close()


def test_threads_get_loops_of_their_own() -> None:
    import threading

    jobs = JobLoop()
    mine = jobs.run(current_loop())
    theirs: list[asyncio.AbstractEventLoop] = []
    thread = threading.Thread(target=lambda: theirs.append(jobs.run(current_loop())))
    thread.start()
    thread.join(10)
    assert theirs and theirs[0] is not mine
    assert jobs.run(current_loop()) is mine
    mine.close()
    theirs[0].close()
