"""Format plugins from the ``tether.formats`` entry-point group take part in ``format="auto"`` from the first call.

The plugin is a real installed distribution: a ``.dist-info`` directory with
``entry_points.txt`` next to its module, on ``sys.path`` of a fresh Python.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

PLUGIN = '''
import tether


class Reading:
    def __init__(self, v):
        self.v = v


class ReadingFormat(tether.formats.Format):
    id, name, auto_priority = 300, "test-reading", 25

    def auto_pick(self, obj, transport):
        return ("a Reading", 8) if isinstance(obj, Reading) else None

    def encode(self, obj, ctx):
        if obj.v < 0:
            raise RuntimeError("negative readings are not supported")
        p = tether.formats.Payload({})
        p.add(int(obj.v).to_bytes(8, "little", signed=True))
        return p

    def decode(self, payload, type_info, ctx):
        return Reading(int.from_bytes(payload, "little", signed=True))
'''

SCRIPT = '''
import json, logging, warnings
import tether, tplug_reading

out = {"registered_before": "test-reading" in tether.formats.registry}
frame = tether.dumps(tplug_reading.Reading(42))
out["auto"] = [tether.last_decision().format, tether.last_decision().reason, tether.loads(frame).v]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    frame = tether.dumps({"r": tplug_reading.Reading(-1)})  # etf claims the dict, pickle takes the rest
    frame = tether.dumps(tplug_reading.Reading(-1))
out["fallback"] = [tether.last_decision().format, tether.last_decision().fallback_from,
                   [(w.category.__name__, str(w.message)) for w in caught]]
for kwargs in ({"format": "test-reading"}, {"reader": "beam"}):
    try:
        tether.dumps(tplug_reading.Reading(-1), **kwargs)
        out[str(kwargs)] = None
    except tether.EncodeError as exc:
        out[str(kwargs)] = str(exc)
print(json.dumps(out))
'''


@pytest.fixture
def plugin_path(tmp_path):
    (tmp_path / "tplug_reading.py").write_text(PLUGIN)
    info = tmp_path / "tplug_reading-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tplug-reading\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[tether.formats]\ntest-reading = tplug_reading:ReadingFormat\n")
    return tmp_path


def _run(plugin_path) -> dict:
    src = str(__import__("tether").__file__).rsplit("/tether/", 1)[0]
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True,
                          env={"PYTHONPATH": f"{plugin_path}:{src}", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_plugin_is_picked_by_auto_on_the_first_call(plugin_path):
    out = _run(plugin_path)
    assert out["registered_before"] is False  # only the entry point registers it
    assert out["auto"] == ["test-reading", "a Reading", 42]


def test_a_failing_plugin_falls_back_with_a_warning_or_names_the_place(plugin_path):
    out = _run(plugin_path)
    fmt, fallback_from, caught = out["fallback"]
    assert (fmt, fallback_from) == ("pickle", "test-reading")
    assert ["FallbackWarning", "Sent as pickle instead of test-reading: format test-reading failed: The "
            "test-reading format's encode failed on tplug_reading.Reading at $: RuntimeError: negative readings "
            "are not supported"] in [list(c) for c in caught]
    explicit = out["{'format': 'test-reading'}"]
    assert "test-reading format's encode failed" in explicit and "at $: RuntimeError" in explicit
    assert "RuntimeError: negative readings" in out["{'reader': 'beam'}"]  # no format the BEAM reads takes it


def test_a_lookup_on_another_thread_while_plugins_load_waits_for_them(monkeypatch):
    import threading
    import time

    from tether import _registry

    class Item:
        id, name = 7, "t-slow-plugin"

    class SlowEntryPoint:
        name = "slow"

        def load(self):
            started.set()
            time.sleep(0.2)  # the other thread misses meanwhile
            return Item

    started = threading.Event()
    monkeypatch.setattr(_registry, "entry_points", lambda group: [SlowEntryPoint()])
    reg = _registry.Registry("thing", "tether.test-things", 0xFF)
    found = {}
    first = threading.Thread(target=lambda: found.setdefault("first", reg.get("t-slow-plugin")))
    first.start()
    started.wait(5)
    found["second"] = reg.get("t-slow-plugin")  # before: "Invalid thing", the flag set before the plugin registered
    first.join()
    assert found["first"] is found["second"] and found["second"].name == "t-slow-plugin"
