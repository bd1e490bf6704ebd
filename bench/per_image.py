"""A job's per-image data: each evaluated image's id, confusion matrix and BF, as one .npz file.

``<results>/per_image/<job_id>.npz`` holds ``ids`` (N strings), ``matrices`` ((N, K, K)
uint32 counts, int64 if an image had over 4 gigapixels), ``bf`` ((N,) float64 per-image BF,
NaN where undefined; absent when BF was not computed) and ``format`` (1). It is written
with :func:`bench.files.write_atomic` (np.savez_compressed; 59 classes x 1,000 images is
a few MB at most) and read without pickle. ``<job_id>.csv`` next to it lists each image's
mIoU and pixel accuracy for people (the record's ``per_image`` field names the .npz).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.errors import SegbenchError
from bench.files import write_atomic
from bench.metrics.bootstrap import Arm, matrix_scores

#: the folder of the per-image files in a results folder
FOLDER = "per_image"
FORMAT = 1


if TYPE_CHECKING:
    import pandas as pd


class PerImageError(SegbenchError, ValueError):
    """A per-image file that cannot be read, or data that does not fit together; names the file."""


@dataclass
class PerImage:
    """Per-image data of one job: ``ids`` (N), ``matrices`` (N, K, K), ``bf`` (N,) or None."""

    ids: list[str]
    matrices: np.ndarray
    bf: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.ids = [str(i) for i in self.ids]
        self.matrices = np.asarray(self.matrices)
        m = self.matrices
        if m.ndim != 3 or m.shape[1] != m.shape[2] or m.shape[0] != len(self.ids) or m.dtype.kind not in "iu":
            raise PerImageError(f"per-image matrices must be integer (N, K, K) with one id each; got {m.dtype} "
                                f"{m.shape} for {len(self.ids)} ids")
        if len(set(self.ids)) != len(self.ids):
            raise PerImageError("per-image ids must be unique")
        if self.bf is not None:
            self.bf = np.asarray(self.bf, dtype=np.float64).reshape(-1)
            if self.bf.shape[0] != len(self.ids):
                raise PerImageError(f"{self.bf.shape[0]} per-image BF values for {len(self.ids)} images")

    @property
    def n_images(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return int(self.matrices.shape[1])

    def image_scores(self) -> "pd.DataFrame":
        """One row per image: ``id``, ``miou`` (the image's own mIoU over the classes in its
        ground truth or prediction), ``pixel_acc`` and, when kept, ``bf``."""
        sc = matrix_scores(self.matrices)
        import pandas as pd  # here: only the CSV and the report need it, `evaluate` does not

        df = pd.DataFrame({"id": self.ids, "miou": sc["mmseg"], "pixel_acc": sc["pixel_acc"]})
        if self.bf is not None:
            df["bf"] = self.bf
        return df

    def ordered(self, ids: Sequence[str]) -> "PerImage":
        """The same data in the order of ``ids`` (the same set of ids)."""
        if sorted(ids) != sorted(self.ids):
            raise PerImageError("per-image data of other images")
        pos = {i: k for k, i in enumerate(self.ids)}
        order = np.array([pos[i] for i in ids], dtype=np.intp)
        return PerImage(list(ids), self.matrices[order], None if self.bf is None else self.bf[order])


def seeds_arm(data: Sequence[PerImage], convention: str = "mmseg") -> Arm:
    """The bootstrap arm of one method: the per-image data of its seeds (the same ids in the
    same order; BF kept only when every seed has it)."""
    if any(d.ids != data[0].ids for d in data):
        raise PerImageError("the seeds of one method must be scored on the same images in the same order")
    bf = np.stack([d.bf for d in data]) if all(d.bf is not None for d in data) else None
    return Arm(np.stack([d.matrices for d in data]), convention, bf)


def relative_path(job_id: str) -> str:
    """Where a job's per-image .npz goes, relative to the results folder."""
    return f"{FOLDER}/{job_id}.npz"


def write_per_image(path: str | Path, data: PerImage) -> Path:
    """``data`` as a compressed .npz at ``path`` (atomically) and its per-image CSV next to it."""
    path = Path(path)
    arrays: dict[str, Any] = {"format": np.array(FORMAT), "ids": np.array(data.ids, dtype=np.str_),
                              "matrices": data.matrices}
    if data.bf is not None:
        arrays["bf"] = data.bf
    write_atomic(path, lambda f: np.savez_compressed(f, **arrays))
    write_atomic(path.with_suffix(".csv"), data.image_scores().to_csv(index=False))
    return path


def read_per_image(path: str | Path) -> PerImage:
    """The per-image data :func:`write_per_image` wrote; :class:`PerImageError` naming the file
    when it is missing, unreadable or not such a file."""
    path = Path(path)
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except OSError as e:
        raise PerImageError(f"{path}: cannot read the per-image data ({e.strerror or e})") from None
    except (ValueError, zipfile.BadZipFile, EOFError) as e:
        raise PerImageError(f"{path}: not a readable per-image file ({type(e).__name__}: {e})") from None
    if "format" not in arrays or arrays["format"].shape != () or int(arrays["format"]) != FORMAT \
            or "ids" not in arrays or "matrices" not in arrays:
        raise PerImageError(f"{path}: not a segbench per-image file of format {FORMAT}")
    try:
        return PerImage([str(i) for i in arrays["ids"]], arrays["matrices"], arrays.get("bf"))
    except PerImageError as e:
        raise PerImageError(f"{path}: {e}") from None
