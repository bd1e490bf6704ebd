"""Dataset registry: one name -> one Dataset class.

Register a dataset with ``@register_dataset("name")`` on its class (one file in this
package) and add its module to ``_MODULES`` below (one line).
"""

from __future__ import annotations

from pathlib import Path

from bench.datasets.types import (
    Dataset, DatasetError, DatasetInfo, FileSplit, InMemorySplit, Sample, SkippedSample, SkippingSplit, Split,
)
from bench.registry import Registry

__all__ = [
    "Dataset", "DatasetError", "DatasetInfo", "FileSplit", "InMemorySplit", "Sample", "SkippedSample", "SkippingSplit",
    "Split",
    "register_dataset", "get_dataset", "dataset_names", "DEFAULT_DATASET",
]

#: modules that register datasets; adding a dataset family = one file + one line here
_MODULES = [
    "bench.datasets.shapes",
    "bench.datasets.ccp",
    "bench.datasets.camvid",
    "bench.datasets.folder",
    "bench.datasets.landcover",
    "bench.datasets.bsds500",
    "bench.datasets.isbi2012",
]

#: used when the user names no dataset: real photos shipped with the package
DEFAULT_DATASET = "ccp-mini"

_REGISTRY: Registry[type[Dataset]] = Registry("dataset", _MODULES, DatasetError)
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
        return cls(root=root, **options) if root is not None or not cls.builtin else cls(**options)
    except TypeError as e:
        raise DatasetError(f"dataset '{name}': bad options {options}: {e}") from None
