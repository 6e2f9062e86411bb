"""A module whose import fails while the file TETHER_TEST_FAIL_IMPORT names exists (ExUnit's start-failure tests)."""

import os

_FLAG = os.environ.get("TETHER_TEST_FAIL_IMPORT")
if _FLAG and os.path.exists(_FLAG):
    raise ImportError(f"{_FLAG} exists: this import is told to fail")
