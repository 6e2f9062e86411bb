"""Elixir structs ⇄ Python types: the built-in mappings and ``register_struct``.

A decoded map whose ``__struct__`` names a registered struct becomes the
Python value its ``to_python`` returns; any other struct stays a dict that
keeps ``__struct__``, so it round-trips. On encode, instances of a registered
``python_type`` become the struct its ``from_python`` returns.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable

from . import types as _usertypes
from ._errors import DecodeError, LossyConversionWarning, ValidationError, warn_at_caller
from ._types import FLOAT_ATOMS, Atom, FrozenList, FrozenMap

STRUCT = Atom("__struct__")
_ISO = Atom("Elixir.Calendar.ISO")
_UTC_NAMES = ("Etc/UTC", "UTC", "Etc/GMT", "GMT")


@dataclass(frozen=True, slots=True)
class StructMapping:
    name: Atom
    python_type: type | tuple[type, ...] | None
    to_python: Callable[[dict], Any] | None
    from_python: Callable[[Any], dict] | None


# Both are replaced whole on every change and never changed in place, so an encoder or decoder on another
# thread iterates a consistent snapshot. _by_name is in registration order (a name registered again moves to
# the end): a type that several mappings cover goes to the newest, and back to the one before when that one
# is unregistered.
_by_name: dict[str, StructMapping] = {}
_by_type: dict[type, StructMapping] = {}
_writing = threading.Lock()


def _types_of(mapping: StructMapping) -> tuple[type, ...]:
    t = mapping.python_type
    return () if t is None else t if isinstance(t, tuple) else (t,)


def _install(by_name: dict[str, StructMapping]) -> None:
    """Swap in ``by_name`` and the type index built from it (under ``_writing``)."""
    global _by_name, _by_type
    _by_type = {t: m for m in by_name.values() for t in _types_of(m)}
    _by_name = by_name


def _module_atom(name: str) -> Atom:
    if not name or not isinstance(name, str):
        raise ValidationError(f"A struct name must be a module name such as 'MyApp.Point', got {name!r}.")
    return Atom(name if name.startswith("Elixir.") or name[0].islower() else f"Elixir.{name}")


def register_struct(
    name: str,
    *,
    python_type: type | tuple[type, ...] | None = None,
    to_python: Callable[[dict], Any] | None = None,
    from_python: Callable[[Any], dict] | None = None,
) -> None:
    """Map an Elixir struct to a Python type, in both directions.

    Parameters
    ----------
    name : str
        The Elixir module, e.g. ``"MyApp.Point"`` (``"Elixir."`` is added).
    python_type : type or tuple of types, optional
        Python instances of these types encode through ``from_python``.
    to_python : callable, optional
        Gets the decoded struct as a dict (atom keys, ``__struct__`` included)
        and returns the Python value.
    from_python : callable, optional
        Gets the Python value and returns the struct's fields as a dict with
        atom (or str) keys; ``__struct__`` is added for you.

    Examples
    --------
    >>> import tether
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Point:
    ...     x: int
    ...     y: int
    >>> tether.etf.register_struct("MyApp.Point", python_type=Point,
    ...     to_python=lambda d: Point(d["x"], d["y"]),
    ...     from_python=lambda p: {"x": p.x, "y": p.y})
    >>> tether.etf.decode(tether.etf.encode(Point(1, 2)))
    Point(x=1, y=2)
    >>> tether.etf.unregister_struct("MyApp.Point")
    True
    """
    if (python_type is None) != (from_python is None):
        raise ValidationError("register_struct needs python_type and from_python together.")
    mapping = StructMapping(_module_atom(name), python_type, to_python, from_python)
    key = str(mapping.name)
    with _writing:
        _install({**{k: m for k, m in _by_name.items() if k != key}, key: mapping})


def unregister_struct(name: str) -> bool:
    """Forget the mapping of Elixir struct ``name``; True if there was one.

    The struct then decodes as a dict, and the Python types it covered encode as they would without it: through
    the mapping registered for them before this one (tether's own, say), or not at all.

    Examples
    --------
    >>> unregister_struct("MyApp.Nothing")
    False
    >>> unregister_struct("Date")
    Traceback (most recent call last):
    ...
    tether._errors.ValidationError: Elixir.Date is one of tether's own struct mappings: register_struct can replace it, not remove it.
    """
    key = str(_module_atom(name))
    if key in _BUILTIN:
        raise ValidationError(f"{key} is one of tether's own struct mappings: register_struct can replace it, "
                              "not remove it.")
    with _writing:
        if key not in _by_name:
            return False
        _install({k: m for k, m in _by_name.items() if k != key})
    return True


def to_python(d: dict) -> Any:
    """The decoder's hook for a completed map that has a ``__struct__`` key.

    ``%Tether.Type{}`` maps are versioned user types (:mod:`tether.types`).
    """
    name = d.get(STRUCT)
    if name == _usertypes.WIRE_STRUCT:
        return _usertypes.from_wire(d)
    mapping = _by_name.get(str(name)) if isinstance(name, str) else None
    if mapping is None or mapping.to_python is None:
        return d
    return mapping.to_python(d)


def has_mapping(value: Any) -> bool:
    """Whether ``value`` encodes as an Elixir struct (a datetime, or a registered Python type)."""
    return (isinstance(value, _dt.datetime) or any(isinstance(value, t) for t in _by_type)
            or _usertypes.lookup(value) is not None)


def from_python(value: Any, path: object) -> Any:
    """The encoder's hook for values with no ETF type of their own; returns a dict or the value."""
    mapping = _by_type.get(type(value))
    if mapping is None:
        for t, m in _by_type.items():
            if isinstance(value, t):
                mapping = m
                break
    if mapping is None or mapping.from_python is None:
        return value
    try:
        fields = mapping.from_python(value)
    except Exception as exc:  # a user's function: whatever it raises, the caller gets a typed error
        raise _usertypes.TypeEncodeError(
            f"The struct mapping {mapping.name} (register_struct from_python) failed on {type(value).__qualname__} "
            f"at {path}: {type(exc).__name__}: {exc}",
            f"{mapping.name} from_python", path,
        ) from exc
    out = {STRUCT: mapping.name}
    out.update({Atom(k) if type(k) is str else k: v for k, v in fields.items()})
    return out


# ---------------------------------------------------------------- built-ins


def _g(d: dict, key: str, default: Any = None) -> Any:
    return d.get(Atom(key), default)


def _micro(d: dict) -> int:
    m = _g(d, "microsecond", (0, 0))
    return m[0] if isinstance(m, tuple) else int(m)


def _iso(d: dict, what: str) -> None:
    """Refuse a date or time in another calendar than ISO: Python's are ISO, and its fields would be read as
    ISO ones, a different day."""
    calendar = _g(d, "calendar", _ISO)
    if calendar != _ISO:
        # Named only when it is a name: str() of a forged term may be huge, or nested past repr's recursion.
        name = calendar[:80] if isinstance(calendar, str) else f"(a {type(calendar).__name__})"
        raise DecodeError(f"A %{what}{{}} in calendar {name}: Python's dates and times are "
                          f"Calendar.ISO ones. Convert it first ({what}.convert!(value, Calendar.ISO)), or decode "
                          "with structs=False to get its fields.")


def _date_to_py(d: dict) -> _dt.date:
    _iso(d, "Date")
    return _dt.date(_g(d, "year"), _g(d, "month"), _g(d, "day"))


def _date_from_py(v: _dt.date) -> dict:
    return {"calendar": _ISO, "year": v.year, "month": v.month, "day": v.day}


def _time_to_py(d: dict) -> _dt.time:
    _iso(d, "Time")
    return _dt.time(_g(d, "hour"), _g(d, "minute"), _g(d, "second"), _micro(d))


def _time_from_py(v: _dt.time) -> dict:
    if v.tzinfo is not None:
        warnings.warn(f"time {v} has a tzinfo; Elixir Time has none, it is dropped.", LossyConversionWarning, 4)
    return {"calendar": _ISO, "hour": v.hour, "minute": v.minute, "second": v.second,
            "microsecond": (v.microsecond, 6)}


def _naive_to_py(d: dict, what: str = "NaiveDateTime") -> _dt.datetime:
    _iso(d, what)
    return _dt.datetime(_g(d, "year"), _g(d, "month"), _g(d, "day"), _g(d, "hour"), _g(d, "minute"),
                        _g(d, "second"), _micro(d))


def _datetime_to_py(d: dict) -> _dt.datetime:
    naive = _naive_to_py(d, "DateTime")
    zone = _g(d, "time_zone", b"Etc/UTC")
    zone = zone.decode() if isinstance(zone, bytes) else str(zone)
    offset = (_g(d, "utc_offset") or 0) + (_g(d, "std_offset") or 0)
    if zone in _UTC_NAMES and offset == 0:
        return naive.replace(tzinfo=_dt.timezone.utc)
    try:
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(zone)
        # A wall time in an hour the clocks repeat (or skip) has two offsets: the one written picks the fold.
        for fold in (0, 1):
            aware = naive.replace(tzinfo=tz, fold=fold)
            if aware.utcoffset() == _dt.timedelta(seconds=offset):
                return aware
    except Exception:  # zoneinfo missing, or no tz database entry
        pass
    warnings.warn(
        f"DateTime in time zone {zone!r} is not known here; it decodes with a fixed UTC offset of "
        f"{offset} s. Install tzdata to keep the zone.",
        LossyConversionWarning, 4,
    )
    return naive.replace(tzinfo=_dt.timezone(_dt.timedelta(seconds=offset)))


def _datetime_from_py(v: _dt.datetime) -> dict:
    fields = {"calendar": _ISO, "year": v.year, "month": v.month, "day": v.day, "hour": v.hour,
              "minute": v.minute, "second": v.second, "microsecond": (v.microsecond, 6)}
    if v.tzinfo is None:
        return fields  # a NaiveDateTime: the caller picks the struct name
    offset = v.utcoffset() or _dt.timedelta(0)
    dst = v.dst() or _dt.timedelta(0)
    key = getattr(v.tzinfo, "key", None)
    if offset == _dt.timedelta(0) and (key is None or key in _UTC_NAMES):
        zone, abbr = "Etc/UTC", "UTC"
    elif key is not None:
        zone, abbr = key, v.tzname() or key
    else:
        warnings.warn(
            f"datetime {v.isoformat()} has a fixed offset, not a named zone; Elixir DateTime gets "
            "time_zone 'Etc/UTC' shifted to UTC. Use zoneinfo.ZoneInfo for a named zone, or send UTC.",
            LossyConversionWarning, 4,
        )
        v = v.astimezone(_dt.timezone.utc)
        return _datetime_from_py(v)
    fields.update({"time_zone": zone, "zone_abbr": abbr, "utc_offset": int((offset - dst).total_seconds()),
                   "std_offset": int(dst.total_seconds())})
    return fields


def _decimal_to_py(d: dict) -> decimal.Decimal:
    sign, coef, exp = _g(d, "sign", 1), _g(d, "coef"), _g(d, "exp", 0)
    if coef == "NaN":
        return decimal.Decimal("-NaN" if sign == -1 else "NaN")
    if coef == "inf":
        return decimal.Decimal("-Infinity" if sign == -1 else "Infinity")
    return decimal.Decimal((0 if sign == 1 else 1, tuple(int(c) for c in str(coef)), exp))


def _decimal_from_py(v: decimal.Decimal) -> dict:
    sign, digits, exp = v.as_tuple()
    if exp == "n" or exp == "N":
        if exp == "N" or digits:  # Decimal's %Decimal{coef: :NaN} is quiet and carries no diagnostic digits
            warn_at_caller(f"Decimal {v} comes back as {'-' if sign else ''}NaN: Elixir's Decimal has no signalling "
                           "NaN nor NaN payload digits.", LossyConversionWarning)
        return {"sign": -1 if sign else 1, "coef": Atom("NaN"), "exp": 0}
    if exp == "F":
        return {"sign": -1 if sign else 1, "coef": Atom("inf"), "exp": 0}
    coef = int("".join(map(str, digits)) or "0")
    return {"sign": -1 if sign else 1, "coef": coef, "exp": exp}


def _complex_to_py(d: dict) -> complex:
    return complex(_complex_part(_g(d, "re", 0)), _complex_part(_g(d, "im", 0)))


def _complex_part(x: Any) -> float:
    """A part of a ``%Complex{}``: a number, or one of the atoms Complex (and Nx) write for NaN and infinities."""
    if isinstance(x, Atom) and x in FLOAT_ATOMS:
        return FLOAT_ATOMS[x]
    if type(x) is float or type(x) is int:
        return float(x)
    raise DecodeError(f"A %Complex{{}} part must be a number or :nan, :infinity or :neg_infinity, got "
                          f"{type(x).__name__} {x!r:.40}.")


def _complex_from_py(v: complex) -> dict:
    return {"re": _complex_wire(v.real), "im": _complex_wire(v.imag)}


def _complex_wire(x: float) -> Any:
    """A part as Complex holds it: Erlang floats are finite, so NaN and infinities are its atoms."""
    if x - x == 0.0:  # finite: inf - inf and nan are nan
        return x
    return Atom("nan") if x != x else Atom("infinity") if x > 0 else Atom("neg_infinity")


def _mapset_to_py(d: dict) -> Any:
    members = _g(d, "map", {})
    try:
        return set(members)
    except TypeError:
        warnings.warn("MapSet holds unhashable members; decoded as a frozenset of frozen values.",
                      LossyConversionWarning, 4)
        return frozenset(FrozenMap(m) if isinstance(m, dict) else FrozenList(m) if isinstance(m, list) else m
                         for m in members)


def _mapset_from_py(v: Any) -> dict:
    return {"map": {m: [] for m in v}, "version": 2}


def _range_to_py(d: dict) -> range:
    first, last, step = _g(d, "first"), _g(d, "last"), _g(d, "step", 1)
    if step is None:
        step = 1 if last >= first else -1
    return range(first, last + (1 if step > 0 else -1), step)


def _range_from_py(v: range) -> dict:
    # Not len(v): past 2**63 - 1 elements it raises OverflowError. An empty range's last is the one its stop
    # was made from (_range_to_py), so 5..1//1 comes back 5..1//1.
    last = v[-1] if v else v.stop - (1 if v.step > 0 else -1)
    return {"first": v.start, "last": last, "step": v.step}


register_struct("Date", python_type=_dt.date, to_python=_date_to_py, from_python=_date_from_py)
register_struct("Time", python_type=_dt.time, to_python=_time_to_py, from_python=_time_from_py)
register_struct("NaiveDateTime", to_python=_naive_to_py)
register_struct("DateTime", to_python=_datetime_to_py)
register_struct("Decimal", python_type=decimal.Decimal, to_python=_decimal_to_py, from_python=_decimal_from_py)
register_struct("MapSet", python_type=(set, frozenset), to_python=_mapset_to_py, from_python=_mapset_from_py)
register_struct("Range", python_type=range, to_python=_range_to_py, from_python=_range_from_py)
register_struct("Complex", python_type=complex, to_python=_complex_to_py, from_python=_complex_from_py)
# tether's own mappings: register_struct may replace them, unregister_struct does not remove them.
_BUILTIN = frozenset(_by_name)

_NAIVE = _module_atom("NaiveDateTime")
_DATETIME = _module_atom("DateTime")


def _datetime_hook(v: _dt.datetime) -> dict:
    fields = _datetime_from_py(v)
    out = {STRUCT: _DATETIME if "time_zone" in fields else _NAIVE}
    out.update({Atom(k): val for k, val in fields.items()})
    return out


def convert(value: Any, path: object, versions: Any = None) -> Any:
    """Encoder hook: datetimes (both kinds), versioned user types, then struct mappings.

    ``versions`` maps type names to the newest version the reader knows (see :mod:`tether.types`);
    ``path`` is where the value sits, as ``str(path)`` renders it (rendered only for a message).
    """
    if isinstance(value, _dt.datetime):
        if getattr(value, "nanosecond", 0):  # a pandas Timestamp: finer than a datetime, or an Elixir DateTime
            warn_at_caller(
                f"The {type(value).__name__} at {path} has {value.nanosecond} ns past its microsecond, which "
                "Elixir's DateTime and Python's datetime cannot hold: it goes as a datetime without them. Round it "
                "first (ts.floor('us')), or send the nanoseconds as an int (ts.value).",
                LossyConversionWarning,
            )
        return _datetime_hook(value)
    spec = _usertypes.lookup(value)
    if spec is not None:
        return _usertypes.to_wire(value, spec, path, versions)
    return from_python(value, path)
