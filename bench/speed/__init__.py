"""Speed of segmentation methods: ``bench speed`` for networks and classical methods, on one timing core.

:mod:`bench.speed.core` times every call (the runner's leaderboard figures use it too);
:mod:`~bench.speed.networks` sweeps a network over batch sizes, precisions and modes;
:mod:`~bench.speed.classical` times a classical method in one process and in a pool;
:mod:`~bench.speed.memory` backs off out-of-memory batches; :mod:`~bench.speed.loader`
measures the image-file pipeline; :mod:`~bench.speed.table` prints the rows.
"""

from bench.speed.classical import classical_speed, classical_speed_on_dataset
from bench.speed.core import Timing, timed, warm_up
from bench.speed.loader import ImageFileDataset, synthetic_image, write_images
from bench.speed.memory import BatchProbe, free_memory, is_oom
from bench.speed.networks import (
    build_network, largest_batch, measure_model, measure_with_backoff, probe_largest_batch, speed_table,
)
from bench.speed.table import format_speed

__all__ = [
    "BatchProbe", "ImageFileDataset", "Timing", "build_network", "classical_speed", "classical_speed_on_dataset",
    "format_speed", "free_memory", "is_oom", "largest_batch", "measure_model", "measure_with_backoff",
    "probe_largest_batch", "speed_table", "synthetic_image", "timed", "warm_up", "write_images",
]
