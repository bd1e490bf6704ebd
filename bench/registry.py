"""One name -> one class, filled by a decorator, with the registering modules imported lazily.

Used for datasets (:mod:`bench.datasets`) and methods (:mod:`bench.methods`).
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    def __init__(self, kind: str, modules: list[str], error: type[Exception],
                 check: Callable[[str, T], None] = lambda name, cls: None):
        self.kind = kind  # "dataset", "method": used in messages
        self.modules = modules  # imported on first lookup; importing registers
        self.error = error  # raised for an unknown name
        self.check = check  # validates a class before it is registered
        self._classes: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def deco(cls: T) -> T:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self.check(name, cls)
            cls.name = name
            self._classes[name] = cls
            return cls

        return deco

    def _load(self) -> None:
        if not self._loaded:
            for mod in self.modules:
                importlib.import_module(mod)
            self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._classes)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._classes[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} '{name}'; known: {', '.join(sorted(self._classes))}") from None
