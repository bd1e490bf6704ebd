"""The image-file loader pipeline of end-to-end speed: synthetic files, decode + normalise, DataLoader rate."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from bench.speed.core import repeat_until, timed
from bench.torch_helpers import IMAGENET_MEAN, IMAGENET_STD, sync


def synthetic_image(input_hw: Sequence[int], seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 image with smooth gradients, flat regions and mild noise (compresses like a photo)."""
    h, w = int(input_hw[0]), int(input_hw[1])
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / max(w - 1, 1) * 255, yy / max(h - 1, 1) * 255, (xx + yy) / max(h + w - 2, 1) * 255], -1)
    for _ in range(8):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = min(h, y0 + rng.integers(h // 8 + 1, h // 2 + 2)), min(w, x0 + rng.integers(w // 8 + 1, w // 2 + 2))
        img[y0:y1, x0:x1] = rng.integers(0, 256, 3)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_images(folder: str | Path, input_hw: Sequence[int], count: int = 16, image_format: str = "png") -> list[Path]:
    """Write ``count`` synthetic images of ``input_hw`` as PNG or JPEG (quality 90); return the paths."""
    from PIL import Image

    fmt = image_format.lower()
    if fmt not in ("png", "jpeg", "jpg"):
        raise ValueError(f"image_format must be png or jpeg, not {image_format!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        p = folder / f"img_{i:04d}.{'png' if fmt == 'png' else 'jpg'}"
        im = Image.fromarray(synthetic_image(input_hw, seed=i))
        im.save(p, **({"quality": 90} if fmt != "png" else {}))
        paths.append(p)
    return paths


class ImageFileDataset(torch.utils.data.Dataset):
    """Decode + normalise image files, cycling over them for ``length`` items.

    Each item: read the file, decode it to RGB uint8 (PIL or OpenCV), convert to a float
    CxHxW tensor in [0, 1] and normalise with the ImageNet mean and std -- what an
    evaluation pipeline does before the network. Files are read from the page cache after
    the first pass, so disk speed is not part of the figure.
    """

    def __init__(self, paths: Sequence[str | Path], length: int, decoder: str = "pil"):
        if not paths:
            raise ValueError("ImageFileDataset needs at least one file")
        if decoder not in ("pil", "cv2"):
            raise ValueError(f"decoder must be pil or cv2, not {decoder!r}")
        self.paths = [str(p) for p in paths]
        self.length = int(length)
        self.decoder = decoder
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.paths[index % len(self.paths)]
        if self.decoder == "cv2":
            import cv2

            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise OSError(f"cannot decode {path}")
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        else:
            from PIL import Image

            with Image.open(path) as im:
                rgb = np.array(im.convert("RGB"))  # a writable copy
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std


def make_loader(paths: Sequence[Path], batch_size: int, num_workers: int, pin: bool, decoder: str,
                max_batches: int = 10**7) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`ImageFileDataset` batches over ``paths``, in order, whole batches only."""
    ds = ImageFileDataset(paths, length=batch_size * max_batches, decoder=decoder)
    return torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=pin, drop_last=True,
    )


def loader_rate(loader: torch.utils.data.DataLoader, dev: torch.device, channels_last: bool, iters: int,
                min_time_s: float, fn: Callable | None = None) -> float:
    """Images/s through the loader (and ``fn`` when given); the workers' start-up is not timed.

    Runs until both ``min(iters, 10)`` batches and ``min_time_s`` seconds are reached.
    """
    iters = max(1, min(iters, 10))
    it = iter(loader)
    images = 0

    def step() -> None:
        nonlocal images
        xb = next(it).to(dev, non_blocking=True)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if fn is not None:
            fn(xb)
        images += xb.shape[0]

    try:
        for _ in range(max(2, loader.num_workers)):  # every worker has started and produced a batch
            step()
        sync(dev)
        images = 0
        _, seconds = timed(lambda: repeat_until(step, iters, min_time_s), lambda: sync(dev))
        return images / seconds
    finally:
        del it  # shuts the workers down


def end_to_end_rates(e2e: dict, fn: Callable, batch_size: int, dev: torch.device, channels_last: bool,
                     iters: int, min_time_s: float) -> tuple[float, float]:
    """(decode + normalise + forward, decode + normalise only) images/s; ``e2e`` holds ``paths``,
    ``num_workers`` and ``decoder``."""
    loader = make_loader(e2e["paths"], batch_size, e2e["num_workers"], dev.type == "cuda",
                         e2e.get("decoder", "pil"))
    with_model = loader_rate(loader, dev, channels_last, iters, min_time_s, fn)
    return with_model, loader_rate(loader, dev, channels_last, iters, min_time_s)
