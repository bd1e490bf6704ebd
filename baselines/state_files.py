"""The fitted state of the classical methods in files whose reading runs no code.

* scikit-learn estimators: skops (``skops.io``), which rebuilds only types it knows to be
  safe plus those a loader trusts by name; :func:`load_estimator` trusts exactly
  :data:`TRUSTED_TYPES` (the tree structures of the region classifiers) and refuses a file
  that holds any other type, before building anything;
* arrays: ``.npz`` read with ``allow_pickle=False``.

Pickle (and ``joblib``) would run whatever code a file names when it is read, so a results
folder from elsewhere could take over the reader; these formats cannot.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.files import write_atomic
from bench.method import MethodError

#: types outside skops's own safe list that the region classifiers need: the fitted trees of
#: HistGradientBoostingClassifier and of the random / extra-trees forests (arrays only)
TRUSTED_TYPES = frozenset({
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
})


def save_estimator(path: Path, estimator: Any) -> Path:
    """A fitted scikit-learn estimator as a skops file, atomically."""
    import skops.io

    return write_atomic(path, skops.io.dumps(estimator))


def load_estimator(path: Path) -> Any:
    """The estimator of a skops file; MethodError when the file is unreadable or holds a type
    outside skops's safe list and :data:`TRUSTED_TYPES` (nothing is built then)."""
    import skops.io

    try:
        data = Path(path).read_bytes()
        untrusted = set(skops.io.get_untrusted_types(data=data))
    except FileNotFoundError:
        raise MethodError(f"{path}: missing (the fitted state is incomplete)") from None
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError) as e:
        raise MethodError(f"{path}: not a readable skops file ({type(e).__name__}: {e})") from None
    refused = sorted(untrusted - TRUSTED_TYPES)
    if refused:
        raise MethodError(f"{path}: refused, it holds types that are not trusted: {', '.join(refused)}")
    try:
        return skops.io.loads(data, trusted=sorted(untrusted))
    except Exception as e:  # skops reports a damaged file as any of several errors
        raise MethodError(f"{path}: not a readable skops file ({type(e).__name__}: {e})") from e


def save_arrays(path: Path, **arrays: Any) -> Path:
    """Arrays as an ``.npz`` file, atomically."""
    return write_atomic(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def load_arrays(path: Path, *names: str) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an ``.npz`` file (no pickle); MethodError naming the file when it
    is missing, unreadable or lacks one of them."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {n: z[n] for n in names if n in z.files}
    except FileNotFoundError:
        raise MethodError(f"{path}: missing (the fitted state is incomplete)") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise MethodError(f"{path}: not a readable array file ({type(e).__name__}: {e})") from None
    missing = [n for n in names if n not in arrays]
    if missing:
        raise MethodError(f"{path}: no array {', '.join(missing)}")
    return arrays
