"""A handler module whose thread keeps logging across the worker's ready (started at import)."""

import logging
import threading
import time

COUNT = 4000


def _log():
    log = logging.getLogger("early_threads")
    for i in range(COUNT):
        log.warning("t-%d", i)


_thread = threading.Thread(target=_log, daemon=True)
_thread.start()
time.sleep(0.005)  # a little of it before ready, the rest across it


def join():
    _thread.join(30)
    return COUNT
