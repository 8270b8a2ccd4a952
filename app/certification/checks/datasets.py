"""JSONL datasets shipped beside the suites (their bytes are part of the suite hash)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from app.certification.suites import SuiteError, dataset_path


@lru_cache(maxsize=32)
def load_jsonl(name: str) -> tuple[dict[str, Any], ...]:
    """Items of a shipped dataset, one JSON object per non-blank line."""
    items = []
    path = dataset_path(name)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise SuiteError(f"{name}:{number}: not JSON") from None
        if not isinstance(item, dict):
            raise SuiteError(f"{name}:{number}: not an object")
        items.append(item)
    return tuple(items)
