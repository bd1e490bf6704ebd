"""Name -> class registries, filled from package entry points (how segbench registers its own
methods and datasets, and how any installed package adds its own) and, for code that is not
an installed package (a test, a notebook), by the ``register`` decorator.

``get`` also takes an import spec ``package.module:Class``, so a suite file or the command
line can name a class that no package registers.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=type)

#: what to do when no entry point of a group is found at all
INSTALL_HINT = "segbench's own entry points are missing: install it (pip install -e . or pip install .)"


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str, error: type[Exception],
                 check: Callable[[str, T], None] = lambda name, cls: None):
        self.kind = kind  # "dataset", "method": used in messages
        self.group = group  # entry-point group, e.g. "segbench.methods"
        self.error = error  # raised for an unknown or broken name
        self.check = check  # validates a class before it is used
        self._classes: dict[str, T] = {}  # loaded or registered
        self._entry_points: dict[str, metadata.EntryPoint] | None = None

    # -- registration -------------------------------------------------------------------
    def register(self, name: str) -> Callable[[T], T]:
        """Decorator for classes of code that is not an installed package (tests, notebooks);
        installed packages declare an entry point in the ``self.group`` group instead."""
        def deco(cls: T) -> T:
            known = self._classes.get(name)
            if known is not None and known is not cls:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            if name in self._eps() and known is None:
                raise ValueError(f"{self.kind} '{name}' is already an entry point of "
                                 f"{self._eps()[name].value}")
            self._add(name, cls)
            return cls

        return deco

    def _add(self, name: str, cls: T) -> T:
        self.check(name, cls)
        cls.name = name
        self._classes[name] = cls
        return cls

    def _eps(self) -> dict[str, metadata.EntryPoint]:
        if self._entry_points is None:
            found: dict[str, metadata.EntryPoint] = {}
            for ep in metadata.entry_points(group=self.group):
                other = found.get(ep.name)
                if other is not None and other.value != ep.value:
                    raise self.error(f"{self.kind} '{ep.name}' is declared twice: by {other.value} and by {ep.value}")
                found[ep.name] = ep
            self._entry_points = found
        return self._entry_points

    # -- lookup -------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Every registered name (entry points are listed without importing them)."""
        return sorted(set(self._eps()) | set(self._classes))

    def get(self, name: str) -> T:
        """The class of ``name``: a registered name, or an import spec ``module:Class``."""
        if name in self._classes:
            return self._classes[name]
        ep = self._eps().get(name)
        if ep is not None:
            try:
                cls = ep.load()
            except Exception as e:  # a broken plugin names itself, it is not "unknown"
                raise self.error(f"{self.kind} '{name}' ({ep.value}) cannot be loaded: "
                                 f"{type(e).__name__}: {e}") from e
            return self._add(name, cls)
        if ":" in name:
            return self._add(name, self._import_spec(name))
        if not self._eps():
            raise self.error(f"unknown {self.kind} '{name}': {INSTALL_HINT}")
        raise self.error(f"unknown {self.kind} '{name}'; known: {', '.join(self.names())} "
                         "(or an import spec package.module:Class)")

    def _import_spec(self, spec: str) -> T:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise self.error(f"{self.kind} '{spec}': cannot import {module_name} ({e})") from None
        try:
            cls = getattr(module, attr)
        except AttributeError:
            raise self.error(f"{self.kind} '{spec}': {module_name} has no {attr}") from None
        if not isinstance(cls, type):
            raise self.error(f"{self.kind} '{spec}': {attr} is not a class")
        return cls
