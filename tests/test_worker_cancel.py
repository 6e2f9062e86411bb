"""SIGUSR1 cancels the call the BEAM names in the worker's private directory (docs/format.md §8)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tether import Atom as A
from tether import worker as tw
from test_worker import Client

CANCELLED = (A("error"), A("cancelled"))


@pytest.fixture
def named(tmp_path):
    """A worker started as the BEAM starts it (with --stats-dir), and how to name a call then signal it."""
    c = Client("--stats-dir", str(tmp_path))

    def cancel(ident: int | None) -> None:
        path = tmp_path / tw.CANCEL_FILE
        if ident is None:
            path.unlink(missing_ok=True)
        else:
            (tmp_path / "cancel.new").write_text(str(ident))
            os.replace(tmp_path / "cancel.new", path)  # as the BEAM writes it: never half a file
        os.kill(c.proc.pid, signal.SIGUSR1)

    c.cancel = cancel
    yield c
    c.close()


def started(c: Client) -> None:
    assert c.recv(timeout=10, logs=True)[2:4] == ("beam_handlers.started", "started")


def test_the_named_running_call_is_cancelled(named):
    ident = named.request("sleep_announced", 5)
    started(named)
    t0 = time.monotonic()
    named.cancel(ident)
    assert named.recv(timeout=3) == (A("reply"), ident, CANCELLED)
    assert time.monotonic() - t0 < 1
    assert named.ok("add", 1, 2) == 3


def test_a_late_signal_for_an_answered_call_cancels_no_other(named):
    # The BEAM gave up on a call whose reply was already on its way, and its
    # signal lands during the next call: that call must run to its end.
    answered = named.request("add", 1, 1)
    assert named.recv()[1] == answered
    ident = named.request("sleep_announced", 1.0)  # long enough for the signal to land while it runs
    started(named)
    named.cancel(answered)
    assert named.recv(timeout=5) == (A("reply"), ident, (A("ok"), 1.0))


def test_a_signal_that_overtakes_its_call_stops_it_before_it_starts(named):
    # The signal comes before Python has read the call (a busy host): the
    # handler never runs, where it used to run to its end while the BEAM waited.
    ident = named.next_id + 1
    named.cancel(ident)
    time.sleep(0.05)  # the signal is handled before the call is sent (the handler only records it)
    assert named.request("log_warning", "must not run") == ident
    assert named.recv(timeout=5) == (A("reply"), ident, CANCELLED)
    assert not [m for m in named.logs if "must not run" in str(m)]
    assert named.ok("add", 2, 3) == 5  # the next call is not touched


def test_without_the_file_the_running_call_is_cancelled(named):
    ident = named.request("sleep_announced", 5)
    started(named)
    named.cancel(None)
    assert named.recv(timeout=3) == (A("reply"), ident, CANCELLED)


def test_a_cancel_file_that_cannot_be_read_cancels_the_running_call(named, tmp_path):
    ident = named.request("sleep_announced", 5)
    started(named)
    (tmp_path / tw.CANCEL_FILE).write_text("not an id")
    os.kill(named.proc.pid, signal.SIGUSR1)
    assert named.recv(timeout=3) == (A("reply"), ident, CANCELLED)
