"""Run a reader against a writer on two threads, switching between them as often as the interpreter can."""

from __future__ import annotations

import sys
import threading
from typing import Callable


def race(change: Callable[[], None], read: Callable[[], object], reads: int) -> list[BaseException]:
    """Call ``read`` ``reads`` times while another thread calls ``change`` over and over; the errors ``read`` raised.

    Examples
    --------
    >>> race(lambda: None, lambda: None, 10)
    []
    """
    stop, errors = threading.Event(), []

    def churn() -> None:
        while not stop.is_set():
            change()

    def reader() -> None:
        try:
            for _ in range(reads):
                read()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn), threading.Thread(target=reader)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        threads[1].join()
    finally:
        stop.set()
        threads[0].join()
        sys.setswitchinterval(switch)
    return errors
