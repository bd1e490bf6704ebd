"""segbench: classical and deep segmentation on the same data, metrics and timing."""

__version__ = "0.1.0"
