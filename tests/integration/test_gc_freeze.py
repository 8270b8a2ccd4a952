"""Long-lived objects are frozen out of the garbage collector's scans: in the worker's main
process after its warm-up (before it forks its pool) and in each API worker once the app is
loaded. Without it a full collection walked every object of Flask, SQLAlchemy and Celery:
with 256 requests in flight a fifth of a pool child's CPU (bench concurrency_efficiency)."""

from __future__ import annotations

import subprocess
import sys

from app.devtools.harness import settings_env
from tests.support import ROOT


def frozen_after(settings, script: str) -> int:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [sys.executable, "-c", script + "\nimport gc\nprint(gc.get_freeze_count())\n"],
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.strip().splitlines()[-1])


def test_the_worker_freezes_what_its_warm_up_left_before_it_forks(settings) -> None:  # type: ignore[no-untyped-def]
    assert (
        frozen_after(
            settings,
            "from worker import tasks\n"
            "import gc\nassert gc.get_freeze_count() == 0\n"
            "tasks.warm_up_before_fork()",
        )
        > 10_000
    )


def test_each_api_worker_freezes_the_loaded_app(settings) -> None:  # type: ignore[no-untyped-def]
    assert (
        frozen_after(
            settings,
            "from app import create_app\n"
            "from app.cli.main import freeze_after_load\n"
            "create_app()\nfreeze_after_load(None)",
        )
        > 10_000
    )
