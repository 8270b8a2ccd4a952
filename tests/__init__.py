"""The test suite; shared helpers live in tests.support."""

import pytest

# Before anything imports them: the shared helpers' asserts explain a failure as a test's do.
pytest.register_assert_rewrite("tests.support")
