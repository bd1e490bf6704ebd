"""bench.metrics confusion matrix and summary against brute-force references, torchmetrics and
hand-computed values (boundary F1 and the Scorer: test_metrics_boundary.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.metrics import CONVENTIONS, ConfusionMatrix, Scorer, confusion_matrix, image_miou, summarize
from bench.metrics import confusion as C


# ---------------------------------------------------------------------------------------
# brute-force references (explicit loops)
# ---------------------------------------------------------------------------------------
def ref_cm(pred, target, K, ignore=None):
    cm = np.zeros((K, K), np.int64)
    for t, p in zip(np.asarray(target).ravel().tolist(), np.asarray(pred).ravel().tolist()):
        if ignore is not None and t == ignore:
            continue
        cm[t, p] += 1
    return cm


def ref_summary(cm):
    K = len(cm)
    total = sum(cm[i][j] for i in range(K) for j in range(K))
    iou, acc = [], []
    for c in range(K):
        tp = cm[c][c]
        fn = sum(cm[c][j] for j in range(K)) - tp
        fp = sum(cm[i][c] for i in range(K)) - tp
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
        acc.append(tp / (tp + fn) if tp + fn else math.nan)
    defined = [v for v in iou if not math.isnan(v)]
    with_gt = [v for v in acc if not math.isnan(v)]
    fw = sum(sum(cm[c]) / total * iou[c] for c in range(K) if sum(cm[c]) > 0) if total else math.nan
    return {
        "iou": iou, "acc": acc,
        "mmseg": sum(defined) / len(defined) if defined else math.nan,
        "smp": sum(v if not math.isnan(v) else 1.0 for v in iou) / K if total else math.nan,
        "pixel_acc": sum(cm[c][c] for c in range(K)) / total if total else math.nan,
        "mean_acc": sum(with_gt) / len(with_gt) if with_gt else math.nan,
        "fwiou": fw,
    }


def nan_equal(a, b, tol=1e-12):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.all((np.isnan(a) & np.isnan(b)) | (np.abs(a - b) <= tol)))


@pytest.fixture(params=["numpy-bincount", "cv2-calchist"])
def count_path(request, monkeypatch):
    """Run a test with the uint8 counting forced down each of its two code paths."""
    monkeypatch.setattr(C, "_CV_MIN_PIXELS", 1 << 62 if request.param == "numpy-bincount" else 0)
    return request.param


# ---------------------------------------------------------------------------------------
# confusion matrix
# ---------------------------------------------------------------------------------------
def _fits(dtype, K, ignore):
    """Whether every class index and the ignore index can be stored in ``dtype``."""
    info = np.iinfo(dtype)
    return info.max >= max(K - 1, ignore or 0) and info.min <= (ignore or 0)


@pytest.mark.parametrize("dtype,K,ignore", [
    (dtype, K, ignore)
    for dtype in (np.uint8, np.uint16, np.int32, np.int64)
    for K, ignore in ((5, 255), (5, None), (12, 11), (7, -1), (300, 255), (3, 1000))
    if _fits(dtype, K, ignore)
])
def test_cm_random_against_reference(dtype, K, ignore, count_path):
    rng = np.random.default_rng(K + (ignore or 0))
    for _ in range(5):
        pred = rng.integers(0, K, (7, 9))
        target = rng.integers(0, K, (7, 9))
        if ignore is not None:
            target[rng.random((7, 9)) < 0.3] = ignore
        p, t = pred.astype(dtype), target.astype(dtype)
        got = confusion_matrix(p, t, K, ignore)
        assert got.dtype == np.int64 and got.shape == (K, K)
        np.testing.assert_array_equal(got, ref_cm(p, t, K, ignore))


def test_cm_hand_made():
    t = np.array([[0, 0, 1], [1, 2, 255]], np.uint8)
    p = np.array([[0, 1, 1], [1, 0, 2]], np.uint8)
    np.testing.assert_array_equal(confusion_matrix(p, t, 3, 255), [[1, 1, 0], [0, 2, 0], [1, 0, 0]])
    # an ignore index inside [0, K) drops its row (like torchmetrics), the column stays
    np.testing.assert_array_equal(confusion_matrix(p[:, :2], t[:, :2], 3, 2), [[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_cm_empty_and_only_ignore():
    assert confusion_matrix(np.zeros((0, 4), np.uint8), np.zeros((0, 4), np.uint8), 3).sum() == 0
    t = np.full((4, 5), 255, np.uint8)
    p = np.zeros((4, 5), np.uint8)
    assert confusion_matrix(p, t, 3, 255).sum() == 0


def test_cm_counts_beyond_float32_precision():
    """cv2.calcHist counts in float32: more than 2**24 pixels in one bin must stay exact."""
    n = 4097  # 4097**2 = 16785409 > 2**24
    z = np.zeros((n, n), np.uint8)
    cm = confusion_matrix(z, z, 2)
    assert cm[0, 0] == n * n and cm.sum() == n * n


def test_cm_non_contiguous_and_bool(count_path):
    rng = np.random.default_rng(3)
    p = rng.integers(0, 4, (40, 60)).astype(np.uint8)
    t = rng.integers(0, 4, (40, 60)).astype(np.uint8)
    np.testing.assert_array_equal(confusion_matrix(p[:, ::2], t[:, ::2], 4), ref_cm(p[:, ::2], t[:, ::2], 4))
    np.testing.assert_array_equal(confusion_matrix(p.T, t.T, 4), ref_cm(p, t, 4))
    pb, tb = p > 1, t > 1
    np.testing.assert_array_equal(confusion_matrix(pb, tb, 2), ref_cm(pb.astype(int), tb.astype(int), 2))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_cm_numpy_and_torch_identical(dtype, count_path):
    rng = np.random.default_rng(5)
    p = rng.integers(0, 12, (3, 50, 70))
    t = rng.integers(0, 12, (3, 50, 70))
    t[:, :5] = 255
    ref = confusion_matrix(p.astype(np.uint8), t.astype(np.uint8), 12, 255)
    got = confusion_matrix(torch.from_numpy(p).to(dtype), torch.from_numpy(t).to(dtype), 12, 255)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.int64 and got.device.type == "cpu"
    np.testing.assert_array_equal(got.numpy(), ref)
    # non-contiguous tensor
    got_t = confusion_matrix(torch.from_numpy(p).to(dtype).transpose(1, 2), torch.from_numpy(t).to(dtype).transpose(1, 2), 12, 255)
    np.testing.assert_array_equal(got_t.numpy(), ref)
    # the pure-torch path used for CUDA tensors, run on CPU tensors here
    native = C._cm_torch_native(torch.from_numpy(p).to(dtype), torch.from_numpy(t).to(dtype), 12, 255)
    np.testing.assert_array_equal(native.numpy(), ref)


def test_cm_torch_native_checks():
    p = torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=r"pred contains class index\(es\) \[3\]"):
        C._cm_torch_native(p, torch.zeros_like(p), 3, None)
    with pytest.raises(ValueError, match="target contains label"):
        C._cm_torch_native(torch.zeros_like(p), torch.tensor([[0, 7], [1, 255]]), 3, 255)
    np.testing.assert_array_equal(C._cm_torch_native(torch.zeros_like(p), torch.tensor([[0, 2], [1, 255]]), 3, 255).numpy(),
                                  [[1, 0, 0], [1, 0, 0], [1, 0, 0]])


def test_cm_batch_is_sum_of_singles(count_path):
    rng = np.random.default_rng(9)
    p = rng.integers(0, 6, (4, 30, 20)).astype(np.uint8)
    t = rng.integers(0, 6, (4, 30, 20)).astype(np.uint8)
    t[t == 5] = 255
    batch = confusion_matrix(p, t, 6, 255)
    np.testing.assert_array_equal(batch, sum(confusion_matrix(p[i], t[i], 6, 255) for i in range(4)))


def test_cm_errors():
    a = np.zeros((3, 4), np.uint8)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(4, 3\)"):
        confusion_matrix(a, np.zeros((4, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="float32.*integer class indices.*argmax"):
        confusion_matrix(a.astype(np.float32), a, 2)
    with pytest.raises(ValueError, match="float"):
        confusion_matrix(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"pred contains class index\(es\) \[5\] outside \[0, 2\)"):
        confusion_matrix(a + 5, a, 2)
    with pytest.raises(ValueError, match=r"pred contains class index\(es\) \[-1\]"):
        confusion_matrix(a.astype(np.int32) - 1, a, 2)
    with pytest.raises(ValueError, match=r"target contains label value\(s\) \[7\].*ignore index 255"):
        t = a.copy()
        t[0, 0], t[0, 1] = 7, 255
        confusion_matrix(a, t, 2, 255)
    with pytest.raises(ValueError, match=r"\[255\].*no ignore index"):
        confusion_matrix(a, a + 255, 2)
    with pytest.raises(ValueError, match=r"\[-3\]"):
        confusion_matrix(a.astype(np.int64), a.astype(np.int64) - 3, 2, 255)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(a, a, 0)
    with pytest.raises(ValueError, match="differ"):
        Scorer(2).update(a, np.zeros((3, 5), np.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cm_cuda_stays_on_device():
    rng = np.random.default_rng(6)
    p = rng.integers(0, 7, (2, 33, 45))
    t = rng.integers(0, 7, (2, 33, 45))
    t[:, :3] = 255
    ref = ref_cm(p, t, 7, 255)
    got = confusion_matrix(torch.from_numpy(p).cuda(), torch.from_numpy(t).cuda(), 7, 255)
    assert got.device.type == "cuda" and got.dtype == torch.int64
    np.testing.assert_array_equal(got.cpu().numpy(), ref)
    acc = ConfusionMatrix(7, 255)
    acc.update(torch.from_numpy(p).cuda(), torch.from_numpy(t).cuda())
    acc.update(p, t)
    np.testing.assert_array_equal(acc.matrix, 2 * ref)
    sc = Scorer(7, 255)
    sc.update(torch.from_numpy(p).cuda(), torch.from_numpy(t).cuda())
    assert sc.result()["confusion_matrix"] == ref.tolist()


# ---------------------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------------------
def test_confusion_matrix_streaming_merge_reset():
    rng = np.random.default_rng(1)
    imgs = [(rng.integers(0, 4, (8, 9)).astype(np.uint8), rng.integers(0, 4, (8, 9)).astype(np.uint8)) for _ in range(4)]
    cm = ConfusionMatrix(4)
    parts = [cm.update(p, t) for p, t in imgs[:2]]
    np.testing.assert_array_equal(parts[0], ref_cm(*imgs[0], 4))
    other = ConfusionMatrix(4)
    other.update(torch.from_numpy(imgs[2][0]), torch.from_numpy(imgs[2][1]))
    other.update(np.stack([imgs[3][0]]), np.stack([imgs[3][1]]))
    cm += other
    expected = sum(ref_cm(p, t, 4) for p, t in imgs)
    assert isinstance(cm.matrix, np.ndarray) and cm.matrix.dtype == np.int64
    np.testing.assert_array_equal(cm.matrix, expected)
    m = cm.matrix
    m[0, 0] += 100  # a copy
    np.testing.assert_array_equal(cm.matrix, expected)
    cm.reset()
    assert cm.matrix.sum() == 0
    with pytest.raises(ValueError, match="cannot merge"):
        cm.merge(ConfusionMatrix(5))


# ---------------------------------------------------------------------------------------
# summarize
# ---------------------------------------------------------------------------------------
def _summary_matches_reference(cm):
    s = summarize(cm)
    r = ref_summary(cm.tolist())
    assert nan_equal(s["iou"], r["iou"]) and nan_equal(s["acc"], r["acc"])
    for key in ("pixel_acc", "mean_acc", "fwiou"):
        assert nan_equal(s[key], r[key]), key
    assert nan_equal(s["miou"], r["mmseg"])
    assert nan_equal(s["miou_by_convention"]["smp"], r["smp"])
    assert nan_equal(summarize(cm, "smp")["miou"], r["smp"])
    return s


def test_summarize_random_against_reference():
    rng = np.random.default_rng(2)
    for K in (1, 2, 5, 19):
        for _ in range(10):
            p = rng.integers(0, K, (7, 9))
            t = rng.integers(0, K, (7, 9))
            t[rng.random((7, 9)) < 0.2] = 255
            _summary_matches_reference(confusion_matrix(p, t, K, 255))


def test_summarize_hand_made_cases():
    t = np.array([[0, 0, 1], [1, 2, 2]], np.uint8)
    # all correct
    s = _summary_matches_reference(confusion_matrix(t, t, 4))
    assert s["miou"] == 1.0 and s["pixel_acc"] == 1.0 and s["mean_acc"] == 1.0 and s["fwiou"] == 1.0
    assert math.isnan(s["iou"][3]) and s["miou_by_convention"]["smp"] == 1.0  # class 3 absent
    # all wrong
    s = _summary_matches_reference(confusion_matrix((t + 1) % 3, t, 3))
    assert s["miou"] == 0.0 and s["pixel_acc"] == 0.0 and s["fwiou"] == 0.0
    # class 3 only in pred: IoU 0 (counts), recall NaN (no GT)
    p = t.copy()
    p[0, 0] = 3
    s = _summary_matches_reference(confusion_matrix(p, t, 4))
    assert s["iou"][3] == 0.0 and math.isnan(s["acc"][3])
    assert s["iou"][0] == pytest.approx(0.5) and s["miou"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert s["mean_acc"] == pytest.approx((0.5 + 1 + 1) / 3)
    # class 2 only in GT: IoU 0 and recall 0
    p = t.copy()
    p[p == 2] = 0
    s = _summary_matches_reference(confusion_matrix(p, t, 3))
    assert s["iou"][2] == 0.0 and s["acc"][2] == 0.0
    assert s["iou"][0] == pytest.approx(2 / 4)
    # only ignore: every figure NaN
    s = summarize(confusion_matrix(t, np.full_like(t, 255), 3, 255))
    for key in ("miou", "pixel_acc", "mean_acc", "fwiou"):
        assert math.isnan(s[key])
    assert all(math.isnan(v) for v in s["iou"]) and math.isnan(s["miou_by_convention"]["smp"])


def test_summarize_input_checks():
    with pytest.raises(ValueError, match="unknown mIoU convention"):
        summarize(np.eye(2), "keras")
    with pytest.raises(ValueError, match="per_image_miou"):
        summarize(np.eye(2), "per-image")
    with pytest.raises(ValueError, match="square"):
        summarize(np.zeros((2, 3)))
    s = summarize(torch.eye(3, dtype=torch.int64), "per-image", per_image_miou=[0.5, math.nan, 1.0])
    assert s["miou"] == 0.75 and s["miou_by_convention"]["per-image"] == 0.75
    assert summarize(np.eye(2))["miou_by_convention"]["per-image"] is None
    assert all(isinstance(v, float) for v in s["iou"]) and isinstance(s["miou"], float)


def test_conventions_hand_computed():
    """Two 1x4 images, K=3, class 2 absent everywhere; the three conventions differ.

    A: gt 0 0 1 1 / pred 0 0 1 0 -> IoU0 2/3, IoU1 1/2 -> image mIoU 7/12
    B: gt 0 0 0 0 / pred 0 0 0 0 -> IoU0 1 (1, 2 absent)  -> image mIoU 1
    summed: IoU0 = 6/7, IoU1 = 1/2, IoU2 undefined
      mmseg     = (6/7 + 1/2) / 2      = 19/28
      smp       = (6/7 + 1/2 + 1) / 3  = 11/14
      per-image = (7/12 + 1) / 2       = 19/24
    """
    gt = np.array([[[0, 0, 1, 1]], [[0, 0, 0, 0]]], np.uint8)
    pr = np.array([[[0, 0, 1, 0]], [[0, 0, 0, 0]]], np.uint8)
    expected = {"mmseg": 19 / 28, "smp": 11 / 14, "per-image": 19 / 24}
    assert len(set(expected.values())) == 3 and set(expected) == set(CONVENTIONS)
    for conv, value in expected.items():
        sc = Scorer(3, convention=conv, boundary=False)
        for i in range(2):
            sc.update(pr[i], gt[i])
        r = sc.result()
        assert r["miou"] == pytest.approx(value, abs=1e-12)
        assert r["miou_convention"] == conv
        assert r["miou_by_convention"] == pytest.approx(expected, abs=1e-12)
    assert image_miou(confusion_matrix(pr[0], gt[0], 3)) == pytest.approx(7 / 12)


# ---------------------------------------------------------------------------------------
# against torchmetrics
# ---------------------------------------------------------------------------------------
def test_against_torchmetrics():
    """torchmetrics 1.9 behaviour, checked here:

    - MulticlassJaccardIndex(average=None) gives 0.0 (not NaN) for a class absent from
      both pred and GT; ours gives NaN. They agree on every defined class.
    - MulticlassJaccardIndex(average="macro") leaves such classes out: equals our mmseg mIoU.
    - MulticlassAccuracy(average="micro") equals pixel_acc.
    - MulticlassAccuracy(average="macro") keeps a class that is only predicted (recall 0)
      where our mean_acc leaves it out (no GT pixel); they agree when every class has GT.
    """
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    rng = np.random.default_rng(11)
    K, ig = 6, 255
    for trial in range(6):
        t = rng.integers(0, K, (2, 20, 30))
        p = rng.integers(0, K, (2, 20, 30))
        t[rng.random(t.shape) < 0.1] = ig
        if trial % 2:  # classes 4, 5 absent from GT; 5 absent from pred too
            t[t >= 4] = 0
            p[p == 5] = 1
        tt, pt = torch.from_numpy(t), torch.from_numpy(p)
        s = summarize(confusion_matrix(p, t, K, ig))
        tm_iou = MulticlassJaccardIndex(num_classes=K, average=None, ignore_index=ig)(pt, tt).numpy()
        ours = np.array(s["iou"])
        defined = ~np.isnan(ours)
        np.testing.assert_allclose(ours[defined], tm_iou[defined], atol=1e-6)
        assert np.all(tm_iou[~defined] == 0.0)
        tm_macro = MulticlassJaccardIndex(num_classes=K, average="macro", ignore_index=ig)(pt, tt).item()
        assert s["miou"] == pytest.approx(tm_macro, abs=1e-6)
        micro = MulticlassAccuracy(num_classes=K, average="micro", ignore_index=ig)(pt, tt).item()
        assert s["pixel_acc"] == pytest.approx(micro, abs=1e-6)
        macro = MulticlassAccuracy(num_classes=K, average="macro", ignore_index=ig)(pt, tt).item()
        if trial % 2 == 0:  # every class has GT pixels
            assert s["mean_acc"] == pytest.approx(macro, abs=1e-6)
        else:  # class 4 only predicted: torchmetrics averages its recall 0 in, we leave it out
            assert math.isnan(s["acc"][4]) and s["mean_acc"] > macro


def test_against_torchmetrics_ignore_in_range():
    from torchmetrics.classification import MulticlassJaccardIndex

    rng = np.random.default_rng(12)
    t = torch.from_numpy(rng.integers(0, 12, (3, 40, 40)))
    p = torch.from_numpy(rng.integers(0, 12, (3, 40, 40)))
    s = summarize(confusion_matrix(p, t, 12, 11))
    tm = MulticlassJaccardIndex(num_classes=12, average=None, ignore_index=11)(p, t).numpy()
    np.testing.assert_allclose(np.array(s["iou"])[:11], tm[:11], atol=1e-6)


# ---------------------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------------------
@st.composite
def label_pair(draw):
    K = draw(st.integers(1, 40))
    H, W = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    ignore = draw(st.sampled_from([None, 255, -1, K + 3]))
    dtype = draw(st.sampled_from([np.uint8, np.int32, np.int64]))
    if dtype == np.uint8 and ignore == -1:
        ignore = 255
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    hi = draw(st.integers(1, K))  # label range actually used: leaves classes absent
    p = rng.integers(0, hi, (H, W))
    t = rng.integers(0, hi, (H, W))
    if ignore is not None:
        t[rng.random((H, W)) < draw(st.floats(0, 1))] = ignore
    return p.astype(dtype), t.astype(dtype), K, ignore, rng


@settings(max_examples=150, deadline=None)
@given(label_pair())
def test_property_counts_range_permutation(case):
    p, t, K, ignore, rng = case
    cm = confusion_matrix(p, t, K, ignore)
    n_valid = int(np.count_nonzero(t != ignore)) if ignore is not None else t.size
    assert cm.sum() == n_valid
    assert np.array_equal(confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), K, ignore).numpy(), cm)
    s = summarize(cm)
    for conv in ("mmseg", "smp"):
        v = s["miou_by_convention"][conv]
        assert math.isnan(v) or 0.0 <= v <= 1.0
    assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in s["iou"])
    # relabelling classes permutes the per-class IoU and leaves mIoU unchanged
    perm = rng.permutation(K)
    valid = t != ignore if ignore is not None else np.ones(t.shape, bool)
    t2 = t.copy()
    t2[valid] = perm[t[valid]]
    p2 = perm[p].astype(p.dtype)
    s2 = summarize(confusion_matrix(p2, t2, K, ignore))
    assert nan_equal(np.array(s2["iou"])[perm], s["iou"], 1e-12)
    assert nan_equal(s2["miou"], s["miou"], 1e-12)


# ---------------------------------------------------------------------------------------
# what a prediction may hold where the target is ignored; smp with an ignore index that is a class
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,K,ignore", [(np.uint8, 6, 255), (np.int32, 6, 255), (np.int64, 6, -1),
                                            (np.uint8, 12, 11), (np.int32, 300, 255)])
def test_cm_accepts_any_prediction_where_the_target_is_ignored(dtype, K, ignore, count_path):
    """Those pixels are not scored (MMSegmentation, torchmetrics and smp drop them before
    looking at the prediction), so the ignore value or any other value there is accepted."""
    rng = np.random.default_rng(K)
    t = rng.integers(0, K, (3, 40, 50))
    p = rng.integers(0, K, t.shape)
    ignored = rng.random(t.shape) < 0.3
    t[ignored] = ignore
    p[ignored] = ignore
    p[ignored & (rng.random(t.shape) < 0.5)] = K + 7  # any value at all
    p, t = p.astype(dtype), t.astype(dtype)
    expected = ref_cm(p, t, K, ignore)
    np.testing.assert_array_equal(confusion_matrix(p, t, K, ignore), expected)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), K, ignore).numpy(), expected)
    native = C._cm_torch_native(torch.from_numpy(p).long(), torch.from_numpy(t).long(), K, ignore)
    np.testing.assert_array_equal(native.numpy(), expected)
    scorer = Scorer(K, ignore)
    scorer.update(p, t)
    cleared = np.where(ignored, 0, p).astype(dtype)  # the same images with a class at the ignored pixels
    reference = Scorer(K, ignore)
    reference.update(cleared, t)
    assert scorer.result()["confusion_matrix"] == reference.result()["confusion_matrix"]
    assert nan_equal(scorer.image_bf, reference.image_bf)


def test_ignore_value_in_pred_where_target_is_ignored_matches_torchmetrics():
    from torchmetrics.classification import MulticlassConfusionMatrix

    rng = np.random.default_rng(21)
    t = rng.integers(0, 5, (2, 30, 40))
    p = rng.integers(0, 5, t.shape)
    t[rng.random(t.shape) < 0.25] = 255
    p[t == 255] = 255
    tm = MulticlassConfusionMatrix(num_classes=5, ignore_index=255)(torch.from_numpy(p), torch.from_numpy(t))
    np.testing.assert_array_equal(confusion_matrix(p, t, 5, 255), tm.numpy())


def test_ignore_value_in_pred_at_a_scored_pixel_is_refused():
    """A prediction of "ignore" where the target is a class has no column in a KxK matrix:
    MMSegmentation and smp count it as a missed pixel (FN, no FP), torchmetrics fails on it
    (its bincount no longer reshapes to KxK); segbench refuses it with one clear line."""
    from bench.metrics import boundary_f1

    t = np.array([[0, 1, 1], [255, 2, 2]], np.uint8)
    p = np.array([[0, 255, 1], [255, 2, 2]], np.uint8)
    msg = (r"pred contains class index\(es\) \[255\] outside \[0, 3\) at pixels whose target is a class "
           r"\(any value is accepted only where the target is the ignore index 255\)")
    for score in (lambda: confusion_matrix(p, t, 3, 255),
                  lambda: confusion_matrix(torch.from_numpy(p), torch.from_numpy(t), 3, 255),
                  lambda: C._cm_torch_native(torch.from_numpy(p), torch.from_numpy(t), 3, 255),
                  lambda: Scorer(3, 255).update(p, t),
                  lambda: boundary_f1(p, t, 3, 255)):
        with pytest.raises(ValueError, match=msg):
            score()
    with pytest.raises(ValueError, match=r"\[255\] outside \[0, 3\)$"):  # no ignore index: nothing is exempt
        confusion_matrix(p, np.zeros_like(t), 3)


def test_smp_convention_with_an_ignore_index_inside_the_classes_is_refused():
    """smp's get_stats refuses such an ignore index; counting the never-predicted void class
    as IoU 1.0 (what the smp formula would give) is what no library does."""
    rng = np.random.default_rng(22)
    K = 5
    t = rng.integers(0, K, (40, 40))  # class 0 is the void class: the ignore index
    p = rng.integers(1, K, t.shape)  # never predicted
    cm = confusion_matrix(p, t, K, 0)
    told = summarize(cm, ignore_index=0)
    untold = summarize(cm)
    assert told["miou_by_convention"]["smp"] is None
    iou = np.array(untold["iou"])
    assert math.isnan(iou[0]) and untold["miou_by_convention"]["smp"] == pytest.approx((1.0 + iou[1:].sum()) / K)
    assert told["miou"] == untold["miou"] == pytest.approx(iou[1:].mean())  # mmseg: the void class is left out
    with pytest.raises(ValueError, match=r"smp mIoU convention is undefined with the ignore index 0 inside the "
                                         r"class range \[0, 5\).*refuses it too"):
        summarize(cm, "smp", ignore_index=0)
    outside = summarize(confusion_matrix(p, np.where(t == 0, 255, t), K, 255), "smp", ignore_index=255)
    assert outside["miou"] == pytest.approx((1.0 + iou[1:].sum()) / K)  # class 0 absent from both: 1.0, as smp
