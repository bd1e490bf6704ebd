"""Score a folder of predicted index PNGs against a folder of ground-truth index PNGs.

Both folders hold single-channel PNGs whose pixel values are class indices (8- or
16-bit grey, or palette images whose palette indices are the classes); files are paired
by name. Masks are read by :func:`bench.datasets.decoding.read_index_mask`, the reader of
every dataset (a 3-channel PNG whose three channels are equal is accepted as grey), and
scored by :class:`bench.metrics.Scorer`, the same code the runner uses. With ``ci`` the
figures get 95% image-bootstrap intervals (:mod:`bench.metrics.bootstrap`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from bench.datasets.decoding import read_index_mask
from bench.errors import SegbenchError
from bench.files import dumps
from bench.formatting import fmt_value, is_finite_number
from bench.metrics import Scorer
from bench.metrics.bootstrap import METRICS, RESAMPLES, SEED, BootstrapError, bootstrap
from bench.metrics.summary import check_convention
from bench.per_image import PerImage, seeds_arm


class EvaluateError(SegbenchError, ValueError):
    """Bad folders or files for `evaluate`; the one-line message names the folder or file."""


def _png_names(folder: Path, role: str) -> list[str]:
    if not folder.exists():
        raise EvaluateError(f"{role} folder {folder} does not exist")
    if not folder.is_dir():
        raise EvaluateError(f"{role} folder {folder} is not a folder")
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not names:
        raise EvaluateError(f"{role} folder {folder} holds no .png files")
    return names


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, num_classes: int, ignore_index: int | None = None,
                     convention: str = "mmseg", boundary: bool = True, progress: bool = True, ci: bool = False,
                     resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Score predicted index PNGs against GT index PNGs of the same names.

    Returns :meth:`bench.metrics.Scorer.result` plus ``pred_dir``, ``gt_dir``,
    ``num_classes`` and ``ignore_index``; with ``ci`` also ``miou_ci`` ([lo, hi]),
    ``ci`` ({metric: [lo, hi]}), ``iou_ci`` ([lo, hi] per class) and ``bootstrap`` (how:
    ``resamples`` draws of the images, seeded by ``seed``). Raises :class:`EvaluateError` for a missing
    folder, a folder without PNGs, file names that differ, sizes that differ or labels
    outside the class range, and the reader's :class:`~bench.datasets.types.DatasetError`
    for an unreadable file or a mask that is not single-channel; each names the file.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise EvaluateError(f"num_classes must be a positive integer, not {num_classes!r}")
    try:  # a known convention, and not smp with an ignore index that is a class
        check_convention(convention, num_classes, ignore_index)
    except ValueError as e:
        raise EvaluateError(str(e)) from None
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    pred_names = _png_names(pred_dir, "prediction")
    gt_names = _png_names(gt_dir, "ground-truth")
    if pred_names != gt_names:
        pset, gset = set(pred_names), set(gt_names)
        no_pred = sorted(gset - pset)
        no_gt = sorted(pset - gset)
        parts = []
        if no_pred:
            parts.append(f"{len(no_pred)} ground-truth file(s) have no prediction in {pred_dir}: {_listing(no_pred)}")
        if no_gt:
            parts.append(f"{len(no_gt)} prediction file(s) have no ground truth in {gt_dir}: {_listing(no_gt)}")
        raise EvaluateError("file names differ: " + "; ".join(parts))

    scorer = Scorer(num_classes, ignore_index, convention=convention, boundary=boundary)
    names: Any = gt_names
    if progress:
        from tqdm import tqdm

        names = tqdm(gt_names, desc="evaluate", unit="img", leave=False)
    for name in names:
        pred = read_index_mask(pred_dir / name)
        gt = read_index_mask(gt_dir / name)
        if pred.shape != gt.shape:
            raise EvaluateError(
                f"{name}: prediction is {pred.shape[1]}x{pred.shape[0]} but ground truth is "
                f"{gt.shape[1]}x{gt.shape[0]} (WxH)"
            )
        try:
            scorer.update(pred, gt)
        except ValueError as e:
            raise EvaluateError(f"{name}: {e}") from None
    result = scorer.result()
    result.update(pred_dir=str(pred_dir), gt_dir=str(gt_dir), num_classes=num_classes, ignore_index=ignore_index)
    if ci:
        data = PerImage(gt_names, scorer.image_matrices(), scorer.image_bf if boundary else None)
        result.update(intervals(data, convention, resamples, seed))
    return result


def intervals(data: PerImage, convention: str, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """``miou_ci``, ``ci`` ({metric: [lo, hi]}), ``iou_ci`` and ``bootstrap`` of one set of per-image data."""
    try:
        res = bootstrap([seeds_arm([data], convention)], resamples=resamples, seed=seed)
    except BootstrapError as e:
        raise EvaluateError(f"--ci: {e}") from None
    est = res.arms[0]
    return {"miou_ci": list(est.interval("miou")), "ci": {m: list(est.interval(m)) for m in METRICS},
            "iou_ci": [[lo, hi] for lo, hi in zip(est.iou_lo, est.iou_hi)], "bootstrap": res.settings()}


# ---------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------
def _fmt4(value: Any) -> str:
    return fmt_value(value, digits=4)


def _ci_text(pair: Any) -> str:
    """" [lo, hi]" of an interval (``--ci``), or nothing."""
    if not pair or not all(is_finite_number(v) for v in pair):
        return ""
    return f" [{_fmt4(pair[0])}, {_fmt4(pair[1])}]"


def _ci_note(result: dict) -> str:
    b = result.get("bootstrap")
    return "" if not b else (f"[lo, hi]: {100 * b['level']:g}% interval, basic bootstrap over the "
                             f"{b['n_images']} images, {b['resamples']} resamples, seed {b['seed']}")


_SUMMARY = (("mIoU", "miou"), ("pixel acc", "pixel_acc"), ("mean acc", "mean_acc"), ("fwIoU", "fwiou"),
            ("BF", "bf"))


def format_result(result: dict, fmt: str = "text", class_names: Sequence[str] | None = None) -> str:
    """``json``: one JSON object (NaN as null); ``md``: Markdown tables; ``text``: plain table."""
    if fmt == "json":
        keys = ("miou", "pixel_acc", "mean_acc", "fwiou", "bf", "iou", "acc", "miou_convention",
                "miou_by_convention", "n_images", "num_classes", "ignore_index", "pred_dir", "gt_dir",
                "confusion_matrix")
        out = {k: result[k] for k in keys if k in result}
        out.update({k: v for k, v in result.items() if k not in out})
        return dumps(out, sort_keys=False, allow_nan=False)
    if fmt not in ("md", "text"):
        raise ValueError(f"unknown format {fmt!r}; choose json, md or text")

    iou = result.get("iou") or []
    acc = result.get("acc") or []
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(iou))]
    conv = result.get("miou_convention", "mmseg")
    ci, iou_ci = result.get("ci") or {}, result.get("iou_ci") or []
    summary = [(f"{label} ({conv})" if key == "miou" else label, _fmt4(result.get(key)) + _ci_text(ci.get(key)))
               for label, key in _SUMMARY]
    by = result.get("miou_by_convention") or {}
    summary += [(f"mIoU ({c})", _fmt4(v)) for c, v in by.items() if c != conv]
    summary.append(("images", _fmt4(result.get("n_images"))))
    per_class = [(names[i] if i < len(names) else str(i),
                  _fmt4(iou[i]) + _ci_text(iou_ci[i] if i < len(iou_ci) else None),
                  _fmt4(acc[i] if i < len(acc) else None)) for i in range(len(iou))]

    if fmt == "md":
        lines = ["| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in summary]
        lines += ["", "| class | IoU | acc |", "|---|---:|---:|"]
        lines += [f"| {n} | {a} | {b} |" for n, a, b in per_class]
        return "\n".join(lines + (["", _ci_note(result)] if _ci_note(result) else []))

    w = max(len(k) for k, _ in summary)
    lines = [f"{k:<{w}}  {v:>8}" for k, v in summary]
    if per_class:
        cw = max(5, max(len(n) for n, _, _ in per_class))
        lines += ["", f"{'class':<{cw}}  {'IoU':>8}  {'acc':>8}"]
        lines += [f"{n:<{cw}}  {a:>8}  {b:>8}" for n, a, b in per_class]
    return "\n".join(lines + (["", _ci_note(result)] if _ci_note(result) else []))
