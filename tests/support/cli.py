"""Run a `modelcert` command in its own process the way an operator starts it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def config_error(args: list[str], env: Mapping[str, str]) -> str:
    """The one line a command prints when it refuses to start (exit status 2, no traceback):
    a bad setting must name itself in a single line an operator can read in a pod's log."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
