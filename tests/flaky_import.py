"""A module whose import fails while the file TETHER_TEST_FAIL_IMPORT names exists, and takes as many seconds as
the file TETHER_TEST_SLOW_IMPORT names holds while that one exists (ExUnit's start-failure and restart tests)."""

import os
import time

_FLAG = os.environ.get("TETHER_TEST_FAIL_IMPORT")
if _FLAG and os.path.exists(_FLAG):
    raise ImportError(f"{_FLAG} exists: this import is told to fail")

_SLOW = os.environ.get("TETHER_TEST_SLOW_IMPORT")
if _SLOW and os.path.exists(_SLOW):
    with open(_SLOW) as f:
        time.sleep(float(f.read()))
