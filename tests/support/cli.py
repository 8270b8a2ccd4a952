"""Run a `modelcert` command in its own process the way an operator starts it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from app.devtools.harness import BIN


def config_error(args: list[str], env: Mapping[str, str], *, installed: bool = False) -> str:
    """The one line a command prints when it refuses to start (exit status 2, no traceback):
    a bad setting must name itself in a single line an operator can read in a pod's log.
    `installed`: through the `modelcert` script the package installs, as an image runs it."""
    program = [str(BIN / "modelcert")] if installed else [sys.executable, "-m", "app.cli"]
    result = subprocess.run(
        [*program, *args],
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
