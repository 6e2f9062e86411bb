"""A handler module that logs, prints and fires an alert while it imports (test_worker and ExUnit)."""

import logging
import warnings

import tether.metrics

logging.getLogger("early_handlers").warning("loading the model at import")
logging.getLogger("early_handlers").info("an info record at import")
print("a stray print at import")
warnings.warn("an old API at import")
tether.metrics.alert("at_import", "fired while importing", {"n": 1}, "look")


def ping():
    return "pong"
