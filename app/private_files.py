"""Files only their owner may read (development keys, the dev token, the stack file): created
with mode 0600 from the first byte, never written world-readable and chmod-ed after."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def keep_private(path: Path, make: Callable[[], str]) -> str:
    """The value in `path`, or a new one from `make()` written there once. Two processes
    racing agree on one value: the loser reads the winner's."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = str(make())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its value
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)
