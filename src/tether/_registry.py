"""Registries for formats and compressors: plain dicts, with entry points on a miss."""

from __future__ import annotations

import logging
import threading
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from ._errors import UnsupportedFormatError, ValidationError

T = TypeVar("T")
log = logging.getLogger("tether.registry")


class Registry(Generic[T]):
    """Items keyed by both ``name`` and numeric ``id``; the last registration wins."""

    def __init__(self, kind: str, group: str, max_id: int, check: Callable[[Any], None] | None = None,
                 own_below: int = 0):
        self.kind = kind
        self.group = group
        self.max_id = max_id
        self.own_below = own_below  # ids below this are tether's own: replaceable, never removable
        self.check = check  # the item kind's own rules (base class, field types), run by register
        # Both are replaced whole under _writing and never changed in place, so a dumps on another thread
        # that walks them (the automatic format choice does) sees the registry before or after a change.
        self.by_name: dict[str, T] = {}
        self.by_id: dict[int, T] = {}
        self._writing = threading.RLock()  # re-entered: unregister's lookup may load plugins, which register
        self._loaded_entry_points = False
        self._loading = False  # only ever True for the thread holding _writing, while it loads plugins
        self.version = 0  # bumped by every registration, for caches derived from the registry

    def register(self, item: T) -> T:
        name, ident = getattr(item, "name", None), getattr(item, "id", None)
        if not isinstance(name, str) or not name:
            raise ValidationError(f"A {self.kind} needs a non-empty str 'name', got {name!r}.")
        if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident <= self.max_id:
            raise ValidationError(f"A {self.kind} needs an int 'id' in 0..{self.max_id}, got {ident!r}.")
        if self.check is not None:
            self.check(item)
        with self._writing:
            return self._register(item, name, ident)

    def _register(self, item: T, name: str, ident: int) -> T:
        held = getattr(self.by_name.get(name), "id", ident)
        if held != ident:
            # Two ids under one name would leave frames of the old id read by a format that
            # `get(name)` no longer returns, and would write the name under a new id.
            raise ValidationError(
                f"{self.kind.capitalize()} name {name!r} is already registered under id {held}; "
                f"register under id {held} to replace it, or choose another name."
            )
        old = self.by_id.get(ident)
        by_name = dict(self.by_name)
        if old is not None and old.name != name:  # type: ignore[attr-defined]
            log.warning("%s id %d now names %r instead of %r", self.kind, ident, name, old.name)  # type: ignore[attr-defined]
            by_name.pop(old.name, None)  # type: ignore[attr-defined]
        by_name[name] = item
        self.by_id = {**self.by_id, ident: item}
        self.by_name = by_name
        self.version += 1
        return item

    def unregister(self, key: str | int) -> T:
        """Remove the item under a name or id, and return it; tether's own ids are refused.

        Frames that name it then fail to read with the usual "Invalid ..." error. A plugin loaded
        from an entry point comes back only with ``load_entry_points(again=True)``.
        """
        with self._writing:
            item = self.get(key)
            ident = item.id  # type: ignore[attr-defined]
            if ident < self.own_below:
                raise ValidationError(
                    f"{self.kind.capitalize()} {item.name!r} (id {ident}) is one of tether's own and cannot be "  # type: ignore[attr-defined]
                    f"unregistered: frames written with it must stay readable. Register another {self.kind} under "
                    f"id {ident} to replace it."
                )
            self.by_id = {i: v for i, v in self.by_id.items() if i != ident}
            self.by_name = {n: v for n, v in self.by_name.items() if n != item.name}  # type: ignore[attr-defined]
            self.version += 1
        return item

    def instance(self, obj: Any) -> Any:
        """``obj``, or a new instance of it when it is a class (plugins and ``register`` take either).

        Examples
        --------
        >>> from tether import formats
        >>> type(formats.registry.instance(type(formats.get("raw")))).__name__
        'RawFormat'
        """
        if not isinstance(obj, type):
            return obj
        try:
            return obj()
        except TypeError as exc:
            raise ValidationError(
                f"Cannot create the {self.kind} {obj.__name__}() with no arguments ({exc}); "
                f"register an instance instead."
            ) from exc

    def get(self, key: str | int) -> T:
        found = self._lookup(key)
        if found is None and not self._loaded_entry_points:
            self.load_entry_points()
            found = self._lookup(key)
        if found is None:
            what = f"id {key}" if isinstance(key, int) else repr(key)
            raise UnsupportedFormatError(
                f"Invalid {self.kind} {what}. Valid options are: {', '.join(self.names())}."
                + (" The frame may come from a newer tether or a plugin that is not installed."
                   if isinstance(key, int) else "")
            )
        return found

    def _lookup(self, key: str | int) -> T | None:
        if isinstance(key, bool):
            return None
        if isinstance(key, int):
            return self.by_id.get(key)
        if isinstance(key, str):
            return self.by_name.get(key)
        return None

    @property
    def entry_points_loaded(self) -> bool:
        """Whether the plugins of :attr:`group` were loaded (they load once per process)."""
        return self._loaded_entry_points

    def load_entry_points(self, *, again: bool = False) -> None:
        """Register every plugin of the entry-point group :attr:`group`, once (``again=True``: rescan).

        Called before the first automatic format choice and on the first lookup miss. A plugin that
        fails to load is logged (ERROR on ``tether.registry``) and skipped.

        Examples
        --------
        >>> from tether import formats
        >>> formats.registry.load_entry_points()
        >>> formats.registry.entry_points_loaded
        True
        """
        if self._loaded_entry_points and not again:
            return
        # Loaded under the lock, and marked loaded only after: a lookup on another thread that misses
        # meanwhile waits here for the plugins instead of failing. A plugin that looks something up
        # as it loads finds _loading set, and is not loaded again.
        with self._writing:
            if (self._loaded_entry_points and not again) or self._loading:
                return
            self._loading = True
            try:
                self._load_entry_points()
            finally:
                self._loading = False
                self._loaded_entry_points = True

    def _load_entry_points(self) -> None:
        for ep in entry_points(group=self.group):
            try:
                obj = ep.load()
                item = self.register(self.instance(obj))
                log.debug("loaded %s plugin %s: %r", self.kind, ep.name, item)
            except Exception:  # a broken plugin must not break lookups of the others
                log.exception("failed to load %s plugin %s", self.kind, ep.name)

    def names(self) -> list[str]:
        return sorted(self.by_name)

    def __contains__(self, key: object) -> bool:
        return self._lookup(key) is not None  # type: ignore[arg-type]

    def __iter__(self):
        return iter(sorted(self.by_id.values(), key=lambda f: f.id))  # type: ignore[attr-defined]
