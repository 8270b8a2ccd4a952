"""Helpers the tests share: a test imports helpers from here only, never from another test
module. No module here is named test_*, so pytest collects nothing from this package."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
