"""The data side of training: a segbench Split as a torch Dataset, the loaders of a run, and
the class weights of the loss."""

from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.datasets.types import Split
from deep.engine import transforms as T
from deep.engine.config import TrainConfig
from deep.engine.parallel import SingleProcess


class SplitDataset(torch.utils.data.Dataset):
    """A segbench Split as (normalised image CxHxW float32, label HxW int64) pairs.

    ``keep_label=True`` (evaluation) transforms the image only and returns the label at
    its original size, so that predictions are scored at the original resolution.
    """

    def __init__(self, split: Split, transform: Callable, *, keep_label: bool = False):
        self.split = split
        self.transform = transform
        self.keep_label = keep_label
        self.num_classes = split.info.num_classes
        self.ignore = T.loss_ignore_index(split.info.ignore_index)

    def __len__(self) -> int:
        return len(self.split)

    def decoded(self, index: int):
        """Sample ``index`` as (tv_tensors.Image uint8, tv_tensors.Mask int64), its labels checked."""
        sample = self.split[index]
        label = np.asarray(sample.label)
        if label.shape != sample.image.shape[:2]:
            raise ValueError(f"sample {sample.id}: label {label.shape} and image {sample.image.shape[:2]} differ in size")
        bad = (label != self.ignore) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            raise ValueError(f"sample {sample.id}: label value {int(label[bad][0])} is neither a class "
                             f"(0..{self.num_classes - 1}) nor the ignore index {self.ignore}")
        return T.to_tv(sample.image, label)

    def apply(self, image, mask, transform: Callable):
        """``transform`` on a decoded pair (the image only when ``keep_label``), as plain tensors."""
        if self.keep_label:
            return transform(image).as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        image, mask = transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __getitem__(self, index: int):
        return self.apply(*self.decoded(index), self.transform)


class InMemoryDataset(torch.utils.data.Dataset):
    """A :class:`SplitDataset` whose fixed preprocessing (decoding, label checks, the input
    resize) runs once per image, on creation, with the results kept in memory; each item then
    only goes through ``augment`` (the random part). Items equal the on-the-fly path's when
    ``prepare`` followed by ``augment`` is that path's transform."""

    def __init__(self, source: SplitDataset, prepare: Callable, augment: Callable, *, progress: bool = False):
        self.source = source
        self.split = source.split
        self.augment = augment
        self.items = []
        for i in tqdm(range(len(source)), desc=f"{source.split.name}: decode once", unit="img", leave=False,
                      disable=not progress):
            image, mask = source.decoded(i)
            self.items.append((prepare(image), mask) if source.keep_label else tuple(prepare(image, mask)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.source.apply(*self.items[index], self.augment)


class PreparedImages(torch.utils.data.Dataset):
    """The images of a split decoded and preprocessed by ``prepare`` once, on first use (a
    network without BatchNorm never reads them), then kept in memory, without their labels
    (precise BatchNorm needs the images only). Items are (image, an empty tensor), as a
    :class:`SplitDataset`'s with ``prepare`` as its transform."""

    def __init__(self, source: SplitDataset, prepare: Callable, *, progress: bool = False):
        self.source, self.prepare, self.progress = source, prepare, progress

    @functools.cached_property
    def images(self) -> list[torch.Tensor]:
        return [self.prepare(self.source.decoded(i)[0]).as_subclass(torch.Tensor)
                for i in tqdm(range(len(self.source)), desc=f"{self.source.split.name}: decode once (BatchNorm)",
                              unit="img", leave=False, disable=not self.progress)]

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        return self.images[index], torch.empty(0, dtype=torch.int64)


def _identity(image):
    return image


def memory_needed(split: Split, scale: float, *, train: bool, evaluated: bool) -> int:
    """Bytes the in-memory path keeps of a split (estimated from its first image): for
    training, the image (uint8) and label (int64) at ``scale`` and the normalised float image
    for precise BatchNorm; for evaluation, the normalised float image and the label at its
    own size. The trainer keeps the splits in memory when they take at most a quarter of the
    memory available."""
    if len(split) == 0:
        return 0
    h, w = split[0].image.shape[:2]
    sh, sw = T.scaled_size(h, w, scale)
    per_image = (sh * sw * (3 + 8 + 12) if train else 0) + (h * w * 8 + sh * sw * 12 if evaluated else 0)
    return per_image * len(split)


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy and random follow the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass
class Loaders:
    """The loaders of one run and what the loop needs to know about them."""

    train: torch.utils.data.DataLoader
    #: DistributedSampler (``set_epoch`` each epoch) or None: ``train`` shuffles itself
    train_sampler: torch.utils.data.Sampler | None
    #: draws the training order and augmentations' worker seeds; saved in checkpoints
    generator: torch.Generator
    #: the validation split, image by image at the label's size (None: no validation)
    val: torch.utils.data.DataLoader | None
    #: the split the progress figure shows (the validation split, else the training split)
    eval_dataset: SplitDataset | InMemoryDataset
    ignore: int  # the label value the loss skips
    #: the training split preprocessed as for prediction (precise BatchNorm statistics);
    #: kept in memory with the other splits, so that each recalibration decodes nothing
    calibration: SplitDataset | PreparedImages


def make_loaders(train_split: Split, val_split: Split | None, cfg: TrainConfig, *, seed: int, process_seed: int,
                 min_size: int, pin_memory: bool, parallel: SingleProcess, progress: bool = False) -> Loaders:
    """Training loader (augmented, shuffled by its own generator seeded ``process_seed``,
    padded batches) and validation loader (batch size 1, never drawing from the global
    random state) of this process."""
    ignore = T.loss_ignore_index(train_split.info.ignore_index)
    aug = dict(scale_range=cfg.scale_range, crop=cfg.crop_size, hflip=cfg.hflip, jitter=cfg.jitter, ignore=ignore)
    eval_split = val_split if val_split is not None else train_split
    in_memory = cfg.in_memory == "on" or cfg.in_memory == "auto" and (
        memory_needed(train_split, cfg.scale, train=True, evaluated=eval_split is train_split)
        + (0 if eval_split is train_split else memory_needed(eval_split, cfg.scale, train=False, evaluated=True))
        <= _available_bytes() / 4)
    if in_memory:
        train_ds = InMemoryDataset(SplitDataset(train_split, None), T.Scale(cfg.scale), T.augment_transform(**aug),
                                   progress=progress)
        eval_ds = InMemoryDataset(SplitDataset(eval_split, None, keep_label=True), T.eval_transform(cfg.scale),
                                  _identity, progress=progress)
        calibration = PreparedImages(SplitDataset(train_split, None, keep_label=True), T.eval_transform(cfg.scale),
                                     progress=progress)
    else:
        train_ds = SplitDataset(train_split, T.train_transform(scale=cfg.scale, **aug))
        eval_ds = SplitDataset(eval_split, T.eval_transform(cfg.scale), keep_label=True)
        calibration = SplitDataset(train_split, T.eval_transform(cfg.scale), keep_label=True)
    generator = torch.Generator()
    generator.manual_seed(process_seed)
    sampler = parallel.train_sampler(train_ds, seed)  # None: the loader shuffles
    n_train = len(sampler) if sampler is not None else len(train_ds)  # this process's images
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
        # a lone last image would make a batch of one (BatchNorm cannot train on it)
        drop_last=n_train > cfg.batch_size and n_train % cfg.batch_size == 1,
        num_workers=cfg.num_workers, collate_fn=T.PadCollate(ignore, min_size),
        worker_init_fn=seed_worker, generator=generator, pin_memory=pin_memory,
    )
    val_loader = None
    if val_split is not None:
        val_loader = torch.utils.data.DataLoader(
            eval_ds, batch_size=1, sampler=parallel.val_shard(len(eval_ds)), num_workers=cfg.num_workers,
            worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(0),
        )
    return Loaders(train_loader, sampler, generator, val_loader, eval_ds, ignore, calibration)


def median_frequency_weights(labels: Iterable[np.ndarray], num_classes: int, ignore_index: int | None) -> np.ndarray:
    """Median frequency balancing (Eigen & Fergus 2015, used by SegNet on CamVid).

    ``freq(c)`` = pixels of class c / total labelled pixels of the images where c occurs;
    ``weight(c) = median(freq) / freq(c)``, the median over the classes that occur.
    Ignored pixels count nowhere. A class absent from every label map gets weight 1 (it is
    never a target, so its weight does not matter).
    """
    class_pixels = np.zeros(num_classes, np.float64)
    image_pixels = np.zeros(num_classes, np.float64)
    for label in labels:
        lab = np.asarray(label).ravel()
        valid = (lab >= 0) & (lab < num_classes)
        if ignore_index is not None:
            valid &= lab != ignore_index
        counts = np.bincount(lab[valid].astype(np.int64), minlength=num_classes)[:num_classes]
        present = counts > 0
        class_pixels += counts
        image_pixels[present] += counts.sum()
    weights = np.ones(num_classes, np.float64)
    present = class_pixels > 0
    if present.any():
        freq = class_pixels[present] / image_pixels[present]
        weights[present] = np.median(freq) / freq
    return weights.astype(np.float32)


def class_weights(split: Split, kind: str, device: torch.device, progress: bool) -> torch.Tensor | None:
    """The loss's per-class weights: ``kind`` "median-freq" (median frequency balancing),
    "sqrt-median-freq" (the square root of those weights: the same order, half the
    log-range, so rare classes gain without large ones being given away), or None ("none")."""
    if kind == "none":
        return None
    labels = (s.label for s in tqdm(split, desc="class frequencies", unit="img", leave=False, disable=not progress))
    info = split.info
    weights = median_frequency_weights(labels, info.num_classes, info.ignore_index)
    if kind == "sqrt-median-freq":
        weights = np.sqrt(weights)
    return torch.from_numpy(weights).to(device)
