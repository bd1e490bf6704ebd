"""Pack what the GPU machine needs and cannot fetch into one git-ignored folder (issue 14, item 5).

    python scripts/pack_for_device.py --camvid ../shared/datasets/camvid [--out device-carry]

The device tool carries the working tree and the ignored paths named in its `carry` (64 MiB in
all); the machine reaches nothing outside it. This writes ``OUT/camvid``: CamVid train and val
with every frame re-encoded as JPEG (quality 95: the 122 MB of PNG frames would not travel) and
the label PNGs copied unchanged. Every package the GPU suite's jobs import is on that
machine's image already (KINDS.md of the device tool; skops and gco-wrapper, which it lacks,
are imported only by classical methods that suite does not run). scripts/gpu_camvid.sh runs
there from it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
from tqdm.auto import tqdm

SPLITS = ("train", "val")


def pack_camvid(src: Path, dst: Path, quality: int) -> int:
    """Frames of ``src`` (SegNet layout) as JPEG into ``dst``, labels copied; returns the bytes written."""
    total = 0
    for split in SPLITS:
        frames, labels = sorted((src / split).glob("*.png")), src / f"{split}annot"
        if not frames:
            raise SystemExit(f"{src / split}: no PNG frames (is {src} CamVid in the SegNet layout?)")
        (dst / split).mkdir(parents=True, exist_ok=True)
        (dst / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for frame in tqdm(frames, desc=f"camvid {split}"):
            label = labels / frame.name
            if not label.is_file():
                raise SystemExit(f"{label}: missing (every frame needs its label PNG)")
            image = cv2.imread(str(frame), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"{frame}: not a readable image")
            out = dst / split / f"{frame.stem}.jpg"
            if not cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, quality]):
                raise SystemExit(f"{out}: could not be written")
            shutil.copyfile(label, dst / f"{split}annot" / label.name)
            total += out.stat().st_size + label.stat().st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camvid", type=Path, required=True, help="CamVid in the SegNet layout (train, val)")
    parser.add_argument("--out", type=Path, default=Path("device-carry"), help="folder to write (git-ignored)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the frames (default 95)")
    args = parser.parse_args()
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality must be in 1..100, got {args.quality}")
    size = pack_camvid(args.camvid, args.out / "camvid", args.quality)
    print(f"{args.out / 'camvid'}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
