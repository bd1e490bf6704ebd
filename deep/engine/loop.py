"""The one training loop of segbench: :func:`train_one_epoch` and :func:`evaluate` in the
style of torchvision's ``references/segmentation``, and :func:`train`, which runs them epoch
by epoch with validation, checkpoints and figures.

Usage::

    from bench.method import FitContext
    from deep.engine.config import TrainConfig
    from deep.engine.loop import train

    cfg = TrainConfig(epochs=30, batch_size=8, lr=1e-3, optimizer="adam", crop=(256, 256))
    result = train(model, train_split, val_split, cfg, FitContext(run_dir=Path("runs/unet"), seed=0))
    model.load_state_dict(result.best_state or result.final_state)

What lands in the run folder: ``history.csv`` (one row per epoch), ``curves.png`` (loss and
val mIoU), ``progress.png`` (the first validation images at the first, middle and last
epoch), ``last.pt`` (everything needed to resume) and ``best.pt`` (best weights by val
mIoU). ``context.resume`` continues from ``last.pt`` at the next epoch and reaches the same
weights as a run that was never interrupted (same seed; bit-identical on CPU).

Several processes (``torchrun``) train through the same loop with ``parallel=`` a
:class:`~deep.engine.parallel.Distributed`; only its writing process (rank 0) writes files.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bench.datasets.types import Split
from bench.files import write_atomic
from bench.method import FitContext
from bench.metrics import ConfusionMatrix, summarize
from bench.seeding import seed_everything
from bench.torch_helpers import AMP_TO_PRECISION, check_precision, sync
from deep.engine import plots
from deep.engine import transforms as T
from deep.engine.batchnorm import recalibrate_batchnorm, same_size_batches
from deep.engine.checkpoint import (
    Trainables,
    TrainState,
    last_checkpoint,
    restore_last,
    save_checkpoint,
    state_to_cpu,
    weights_checkpoint,
)
from deep.engine.config import TrainConfig, use_channels_last
from deep.engine.data import Loaders, SplitDataset, class_weights, make_loaders
from deep.engine.inference import amp_context, min_input_size, predict_logits
from deep.engine.compiling import maybe_compile
from deep.engine.optim import make_optimizer, make_scheduler
from deep.engine.parallel import SingleProcess, process_seed

#: validation images drawn in ``progress.png``
N_PROGRESS_IMAGES = 3
#: data_time_s: of train_time_s, the seconds the loop waited for the next batch (torchvision's
#: "data" time): near train_time_s, the input pipeline bounds training, not the model
HISTORY_COLUMNS = ("epoch", "train_loss", "val_miou", "lr", "train_time_s", "val_time_s", "images_per_s", "steps",
                   "data_time_s")


@dataclass
class TrainResult:
    history: list[dict[str, float]]  # one row per epoch (see HISTORY_COLUMNS)
    best_epoch: int  # epoch with the best val mIoU (the last epoch when there is no validation)
    best_miou: float  # nan without validation
    final_state: dict[str, torch.Tensor]  # model weights after the last epoch (CPU)
    best_state: dict[str, torch.Tensor] | None  # weights of the best epoch (None without validation)
    out_dir: Path
    train_time_s: float = 0.0  # training time of this call (a resumed run counts only its part)
    # (K, K) confusion matrix of the last validation over the whole validation split
    # (summed over every process); None without validation
    val_confusion: np.ndarray | None = None

    def summary(self) -> dict[str, Any]:
        """Small JSON-able summary for records."""
        return {
            "best_epoch": self.best_epoch,
            "best_val_miou": None if math.isnan(self.best_miou) else self.best_miou,
            "epochs_trained": len(self.history),
            # optimiser steps over every epoch (a resumed run's older rows are filled in _setup)
            "optimizer_steps": int(sum(row["steps"] for row in self.history)),
            "final_train_loss": self.history[-1]["train_loss"] if self.history else None,
            "train_loss": [row["train_loss"] for row in self.history],
            "val_miou": [None if math.isnan(row["val_miou"]) else row["val_miou"] for row in self.history],
            "run_dir": str(self.out_dir),
        }


# -- one epoch of training, one evaluation ----------------------------------------------
def train_one_epoch(net: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    loader: torch.utils.data.DataLoader,
                    scheduler, scaler: torch.amp.GradScaler, *, cfg: TrainConfig, device: torch.device,
                    ignore: int, parallel: SingleProcess, progress: bool, desc: str) -> dict[str, float]:
    """One pass over ``loader``: forward, loss, backward, step, schedule per batch. Returns
    the epoch's mean loss over every process, its time, images per second, optimiser steps
    and the seconds spent waiting for batches (nothing in the step waits for the device,
    so on a GPU that is what the input pipeline costs beyond the model's time)."""
    net.train()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    batches = images_seen = steps = 0
    data_s, ready = 0.0, t0
    bar = tqdm(loader, desc=desc, unit="batch", leave=False, disable=not progress)
    for images, labels in bar:
        data_s += time.perf_counter() - ready
        labelled = bool((labels != ignore).any())
        # all padding/ignore: nothing to learn from. With several processes every one must
        # take part in each gradient all-reduce, so such a batch gets a zero loss instead.
        if not labelled and parallel.world_size == 1:
            ready = time.perf_counter()
            continue
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with amp_context(cfg.amp, device):
            logits = net(images)
            loss = criterion(logits.float(), labels) if labelled else logits.float().sum() * 0.0
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        steps += 1

        if labelled:
            loss_sum += loss.detach()
            batches += 1
        images_seen += images.shape[0]
        if progress and (batches % 10 == 1 or batches == len(loader)):
            bar.set_postfix(loss=f"{loss.item():.4f}",
                            img_s=f"{images_seen / max(time.perf_counter() - t0, 1e-9):.1f}")
        ready = time.perf_counter()
    sync(device)
    seconds = time.perf_counter() - t0
    totals = torch.cat([loss_sum.double().reshape(1),
                        torch.tensor([batches, images_seen], dtype=torch.float64, device=device)])
    loss_total, batches, images_seen = parallel.all_reduce_sum(totals).tolist()  # over all processes
    return {"train_loss": loss_total / batches if batches else float("nan"), "train_time_s": seconds,
            "images_per_s": images_seen / seconds if seconds > 0 else float("nan"), "steps": steps,
            "data_time_s": data_s}


def evaluate(
    net: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable,
    num_classes: int,
    ignore_index: int | None,
    *,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    min_size: int = 1,
    keep: int = 0,
    progress: bool = False,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """(K, K) int64 confusion matrix over a loader of (image, label) pairs of batch size 1,
    each scored at its label's original size; matrices of disjoint loaders add up to the
    matrix of their union. Also returns the predicted maps of the first ``keep`` images."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    kept: list[np.ndarray] = []
    with torch.inference_mode():
        for i, (image, label) in enumerate(tqdm(loader, desc="validate", unit="img", leave=False, disable=not progress)):
            logits = predict_logits(net, image.to(device), label.shape[-2:], amp=amp,
                                    channels_last=channels_last, min_size=min_size)
            pred = logits.argmax(1)[0].cpu().numpy().astype(np.int32)
            cm.update(pred, label[0].numpy())
            if i < keep:
                kept.append(pred)
    return cm.matrix, kept


def predict_first(net, dataset: SplitDataset, k: int, *, device, amp, channels_last, min_size) -> list[np.ndarray]:
    """Predicted maps of the first ``k`` images of ``dataset`` (the progress figure)."""
    preds = []
    with torch.inference_mode():
        for i in range(min(k, len(dataset))):
            image, label = dataset[i]
            logits = predict_logits(net, image[None].to(device), label.shape[-2:], amp=amp,
                                    channels_last=channels_last, min_size=min_size)
            preds.append(logits.argmax(1)[0].cpu().numpy().astype(np.int32))
    return preds


def snapshot_epochs(epochs: int) -> list[int]:
    """Epochs whose predictions go into progress.png: first, middle and last."""
    return sorted({1, (epochs + 1) // 2, epochs})


# -- the run ----------------------------------------------------------------------------
@dataclass
class _Run:
    """Everything :func:`train` set up for one run."""

    cfg: TrainConfig
    context: FitContext
    model_name: str
    info: Any  # the training split's DatasetInfo
    device: torch.device
    parallel: SingleProcess
    loaders: Loaders
    criterion: nn.Module
    trainables: Trainables
    net: nn.Module  # what the training forward/backward goes through (wrapped, compiled)
    state: TrainState
    run_dir: Path
    val_confusion: np.ndarray | None = None
    last_write: float = -math.inf  # time.monotonic() of the last checkpoint write
    best_unsaved: bool = False  # best weights changed since best.pt was last written

    @property
    def model(self) -> nn.Module:  # unwrapped: what is validated and saved
        return self.trainables.model


def train(
    model: nn.Module,
    train_split: Split,
    val_split: Split | None,
    cfg: TrainConfig,
    context: FitContext,
    *,
    model_name: str | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    parallel: SingleProcess | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_split`` (validating on ``val_split`` when given) in
    ``context.run_dir`` on ``context.device``.

    Seeds Python, numpy and torch with ``context.seed`` first (the model's initial weights
    are the caller's business). ``model_name`` (default ``model.name``) is stored in the
    checkpoints so that resuming with another network is an error. ``on_epoch_end(epoch,
    history_row)`` is called after each epoch's checkpoint is written (raising in it stops
    training like an interrupt). With ``parallel`` every process returns the same weights
    and validation figures; ``on_epoch_end`` is called in every process.
    """
    if context.run_dir is None:
        raise ValueError("train: context.run_dir is needed (checkpoints, history, figures)")
    parallel = parallel or SingleProcess()
    model_name = model_name or getattr(model, "name", "") or type(model).__name__
    device = torch.device(context.device)
    check_precision(AMP_TO_PRECISION[cfg.amp], device)
    cfg = dataclasses.replace(cfg, channels_last=use_channels_last(cfg.channels_last, device))
    Path(context.run_dir).mkdir(parents=True, exist_ok=True)
    with cudnn_mode(cfg.deterministic, device, fixed_shapes=cfg.crop_size is not None):
        seed_everything(process_seed(context.seed, parallel.rank))
        run = _setup(model, train_split, val_split, cfg, context, model_name, device, parallel)
        first_images = [run.loaders.eval_dataset.split[i]
                        for i in range(min(N_PROGRESS_IMAGES, len(run.loaders.eval_dataset)))]
        start = time.perf_counter()
        bar = tqdm(range(run.state.start_epoch, cfg.epochs + 1), desc=f"{model_name}: train", unit="epoch",
                   disable=not context.progress, initial=run.state.start_epoch - 1, total=cfg.epochs)
        for epoch in bar:
            if run.loaders.train_sampler is not None:
                run.loaders.train_sampler.set_epoch(epoch)
            t = run.trainables
            stats = train_one_epoch(run.net, run.criterion, t.optimizer, run.loaders.train, t.scheduler, t.scaler,
                                    cfg=cfg, device=device, ignore=run.loaders.ignore, parallel=parallel,
                                    progress=context.progress, desc=f"epoch {epoch}/{cfg.epochs}")
            parallel.broadcast_buffers(run.model)  # every process validates and saves the same model
            val_miou, val_time = _validate(run, epoch)
            row = {"epoch": epoch, **stats, "val_miou": val_miou, "lr": t.optimizer.param_groups[0]["lr"],
                   "val_time_s": val_time}
            _end_epoch(run, row, first_images)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_miou=f"{val_miou:.3f}")
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        bar.close()
        return _result(run, time.perf_counter() - start)


@contextlib.contextmanager
def cudnn_mode(deterministic: bool, device: torch.device, fixed_shapes: bool) -> Iterator[None]:
    """Inside the block: deterministic algorithms (warn only) when ``deterministic``; else, on
    a GPU whose training batches have ``fixed_shapes`` (a crop), cuDNN's benchmark mode, as
    torchvision's reference training does: each convolution shape is timed once and its
    fastest algorithm kept, instead of a heuristic pick (whole images of many sizes would be
    timed size by size). The global flags are restored after it."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    previous_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    elif device.type == "cuda" and fixed_shapes:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous_cudnn


def _setup(model: nn.Module, train_split: Split, val_split: Split | None, cfg: TrainConfig, context: FitContext,
           model_name: str, device: torch.device, parallel: SingleProcess) -> _Run:
    """Loaders, loss, optimiser, schedule and scaler of a run, and its state: fresh, or as
    ``last.pt`` left it when resuming."""
    loaders = make_loaders(train_split, val_split, cfg, seed=context.seed,
                           process_seed=process_seed(context.seed, parallel.rank), min_size=min_input_size(model),
                           pin_memory=device.type == "cuda", parallel=parallel, progress=context.progress)
    weights = class_weights(train_split, cfg.class_weights, device, context.progress)
    criterion = nn.CrossEntropyLoss(weight=weights, ignore_index=loaders.ignore)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)
    steps = len(loaders.train)
    scheduler = make_scheduler(optimizer, cfg.schedule, cfg.epochs * steps, round(cfg.warmup_epochs * steps))
    trainables = Trainables(model, optimizer, scheduler,
                            torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"), loaders.generator)
    run_dir = Path(context.run_dir)
    state = TrainState()
    if context.resume and (run_dir / "last.pt").exists():
        state = restore_last(run_dir / "last.pt", run_dir / "best.pt", trainables, model_name=model_name,
                             num_classes=train_split.info.num_classes, cfg=cfg, seed=context.seed)
        for row in state.history:  # epochs of a run from before the trainer counted steps: this loader's
            if row.get("steps") is None or row["steps"] != row["steps"]:
                row["steps"] = steps
        if parallel.rank != 0:  # only rank 0's random state is saved: the others draw a fresh stream
            seed_everything(process_seed(context.seed, parallel.rank, state.start_epoch))
            loaders.generator.manual_seed(process_seed(context.seed, parallel.rank, state.start_epoch))
        if context.progress:
            tqdm.write(f"{model_name}: resumed from {run_dir / 'last.pt'} at epoch {state.start_epoch}")
    net = parallel.wrap(model)
    net = maybe_compile(net, cfg.compile)
    return _Run(cfg, context, model_name, train_split.info, device, parallel, loaders, criterion, trainables, net,
                state, run_dir)


def _validate(run: _Run, epoch: int) -> tuple[float, float]:
    """Validation mIoU and time of this epoch (nan, 0 when it does not validate), and the
    progress snapshot's maps of the epochs that keep one (uncompiled model: sizes vary).
    Precise BatchNorm statistics are computed first when the model is evaluated or kept."""
    cfg, model = run.cfg, run.model
    model.eval()
    eval_kw = dict(device=run.device, amp=cfg.amp, channels_last=cfg.channels_last, min_size=min_input_size(model))
    keep = N_PROGRESS_IMAGES if epoch in snapshot_epochs(cfg.epochs) else 0
    validating = run.loaders.val is not None and (epoch % cfg.val_every == 0 or epoch == cfg.epochs)
    if cfg.precise_bn and (validating or keep or epoch == cfg.epochs):
        _recalibrate(run)
    val_miou, val_time = float("nan"), 0.0
    if validating:
        t1 = time.perf_counter()
        # each process scores its shard; the sum over processes is the whole split's matrix
        whole_split = run.parallel.world_size == 1
        cm, kept = evaluate(model, run.loaders.val, run.info.num_classes, run.info.ignore_index,
                            keep=keep if whole_split else 0, progress=run.context.progress, **eval_kw)
        run.val_confusion = run.parallel.all_reduce_sum(torch.from_numpy(cm)).numpy()
        val_miou = float(summarize(run.val_confusion)["miou"])
        val_time = time.perf_counter() - t1
        if kept:
            run.state.snapshots[epoch] = kept
    if keep and epoch not in run.state.snapshots and run.parallel.is_writer:
        run.state.snapshots[epoch] = predict_first(model, run.loaders.eval_dataset, keep, **eval_kw)
    return val_miou, val_time


def _recalibrate(run: _Run) -> None:
    """Precise BatchNorm statistics of the model over the whole training split (every process
    computes the same ones), the images padded as for prediction."""
    data, min_size = run.loaders.calibration, min_input_size(run.model)
    images = (T.pad_to(image, max(image.shape[-2], min_size), max(image.shape[-1], min_size), 0.0)
              for image, _ in (data[i] for i in range(len(data))))
    with amp_context(run.cfg.amp, run.device):
        recalibrate_batchnorm(run.model, same_size_batches(images, run.cfg.batch_size), run.device)


def _end_epoch(run: _Run, row: dict[str, float], first_images: Sequence) -> None:
    """Record the epoch; keep the best weights; write the checkpoints, then the files a
    person looks at (writing process only)."""
    state, epoch, writer = run.state, int(row["epoch"]), run.parallel.is_writer
    state.history.append(row)
    val_miou = row["val_miou"]
    num_classes = run.info.num_classes
    if not math.isnan(val_miou) and (math.isnan(state.best_miou) or val_miou > state.best_miou):
        state.best_epoch, state.best_miou = epoch, val_miou
        state.best_state = state_to_cpu(run.model)
        run.best_unsaved = True
    # the first epoch of a (re)start is always due: last_write starts at -inf
    due = epoch >= run.cfg.epochs or time.monotonic() - run.last_write >= run.cfg.checkpoint_every_s
    if not writer or not due:
        return
    run.last_write = time.monotonic()
    if run.best_unsaved:
        save_checkpoint(weights_checkpoint(run.model_name, num_classes, state.best_epoch, state.best_state,
                                           val_miou=state.best_miou), run.run_dir / "best.pt")
        run.best_unsaved = False
    save_checkpoint(last_checkpoint(run.trainables, state, model_name=run.model_name, num_classes=num_classes,
                                    dataset=run.info.name, epoch=epoch, cfg=run.cfg, seed=run.context.seed),
                    run.run_dir / "last.pt")
    write_history_csv(state.history, run.run_dir / "history.csv")
    plots.plot_curves(state.history, run.run_dir / "curves.png", title=f"{run.model_name} on {run.info.name}")
    if state.snapshots:
        plots.plot_progress(first_images, state.snapshots, run.info, run.run_dir / "progress.png")


def _result(run: _Run, seconds: float) -> TrainResult:
    state = run.state
    best_epoch = state.best_epoch
    if not best_epoch:  # no validation: the last epoch is the one kept
        best_epoch = state.history[-1]["epoch"] if state.history else 0
    return TrainResult(history=state.history, best_epoch=best_epoch, best_miou=state.best_miou,
                       final_state=state_to_cpu(run.model), best_state=state.best_state, out_dir=run.run_dir,
                       train_time_s=seconds, val_confusion=run.val_confusion)


def write_history_csv(history: Sequence[dict[str, float]], path: Path) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=HISTORY_COLUMNS)
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in HISTORY_COLUMNS})
    write_atomic(path, text.getvalue(), fsync=False)
