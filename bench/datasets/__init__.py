"""Dataset registry: one name -> one Dataset class, by ``segbench.datasets`` entry points.

Entry points are declared by installed packages (segbench's own in ``pyproject.toml``).
Adding a dataset family = one module with a :class:`Dataset` subclass + one entry point.
Code that is not an installed package (a test, a notebook) registers with
``@register_dataset("name")`` instead.
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets.types import (
    Dataset, DatasetError, DatasetInfo, InMemorySplit, Sample, SkippedSample, SkippingSplit, Split,
)
from bench.registry import Registry

__all__ = [
    "Dataset", "DatasetError", "DatasetInfo", "InMemorySplit", "Sample", "SkippedSample", "SkippingSplit", "Split",
    "register_dataset", "get_dataset", "dataset_names", "dataset_class", "DEFAULT_DATASET",
]

#: used when the user names no dataset: real photos shipped with the package, CCP's 59 classes
#: in 7 person and garment groups (bench/datasets/ccp_groups.py)
DEFAULT_DATASET = "ccp-mini-groups"


def _check_dataset(name: str, cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise DatasetError(f"dataset '{name}': {cls!r} is not a bench.datasets.Dataset")


_REGISTRY: Registry[type[Dataset]] = Registry("dataset", "segbench.datasets", DatasetError, _check_dataset)
#: decorator for datasets defined outside an installed package (tests, notebooks)
register_dataset = _REGISTRY.register
dataset_names = _REGISTRY.names
dataset_class = _REGISTRY.get


def get_dataset(name: str, root: str | Path | None = None, **options) -> Dataset:
    """Instantiate dataset ``name``. ``root`` is its folder (required unless built in).

    Unknown ``options`` are an error, not silently ignored.
    """
    cls = dataset_class(name)
    if root is None and not cls.builtin:
        raise DatasetError(f"dataset '{name}' needs --data-root (the folder that holds it)")
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: data root does not exist or is not a folder")
    try:
        return cls(root=root, **options) if root is not None else cls(**options)
    except TypeError as e:
        raise DatasetError(f"dataset '{name}': bad options {options}: {e}") from None
