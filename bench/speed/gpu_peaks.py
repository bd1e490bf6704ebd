"""Peak dense TFLOP/s of common NVIDIA GPUs per precision (achieved throughput as a fraction of it).

Source: the vendor's own figures -- NVIDIA's product datasheets (H100, H200, A100, L4,
L40S, A10, T4, V100) and architecture whitepapers for the GeForce cards (GA102 "Ampere"
whitepaper for the RTX 3090, "Ada Lovelace" whitepaper for the RTX 4090). They are
theoretical peaks at boost clock, not measurements.

Conventions of this table:

* **dense** figures only. Datasheets print the tensor-core numbers "with sparsity"
  (2:4 structured sparsity, marked ``*``); the dense figure is half of it, and that is
  what a convolutional network without pruning can reach.
* ``fp32`` is the CUDA-core (non-tensor) FP32 peak; ``tf32`` the TF32 tensor-core peak;
  ``bf16`` / ``fp16`` the tensor-core peaks with FP32 accumulation (the mode autocast
  uses). For the GeForce cards this matters: their FP16/BF16 tensor rate with FP32
  accumulate is half the FP16-accumulate figure, and the table has the former.
* ``None`` where the precision has no hardware support (TF32 and BF16 need Ampere or
  newer: T4 and V100 have neither). For V100 and T4 ``fp16`` is the tensor-core
  ("mixed precision") figure.
* One FLOP is one floating-point operation: a multiply-add counts as two.

Names are matched against ``torch.cuda.get_device_name()`` (e.g. "NVIDIA H100 80GB HBM3",
"NVIDIA A100-SXM4-40GB", "Tesla T4") by :func:`lookup`; an unknown GPU gives ``None`` and
``--peak-tflops`` supplies the figure instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bench.torch_helpers import PRECISIONS


@dataclass(frozen=True)
class GpuPeak:
    name: str  # canonical name used in tables
    fp32: float | None
    tf32: float | None
    bf16: float | None
    fp16: float | None
    source: str

    def for_precision(self, precision: str) -> float | None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
        return getattr(self, precision)


_DS = "NVIDIA datasheet"
#: (regex on the lower-cased device name, peaks). Order matters: the first match wins, so
#: specific variants (H100 PCIe / NVL, L40S vs L40 vs L4, A100 vs A10) come first.
_TABLE: list[tuple[str, GpuPeak]] = [
    # Hopper. H100 SXM5: 67 FP32, 989 TF32*, 1979 BF16*/FP16* (* with sparsity).
    (r"h100.*nvl", GpuPeak("H100 NVL", 60.0, 417.5, 835.5, 835.5, _DS + " (H100 NVL)")),
    (r"h100.*pcie", GpuPeak("H100 PCIe", 51.0, 378.0, 756.5, 756.5, _DS + " (H100 PCIe)")),
    (r"h100", GpuPeak("H100 SXM", 67.0, 494.7, 989.4, 989.4, _DS + " (H100 SXM)")),
    (r"h200.*nvl", GpuPeak("H200 NVL", 60.0, 417.5, 835.5, 835.5, _DS + " (H200 NVL)")),
    (r"h200", GpuPeak("H200 SXM", 67.0, 494.7, 989.4, 989.4, _DS + " (H200 SXM)")),
    # Ampere data centre. A100 40GB and 80GB, SXM4 and PCIe: the same peak figures.
    (r"a100", GpuPeak("A100", 19.5, 156.0, 312.0, 312.0, _DS + " (A100 40GB/80GB)")),
    (r"\ba10g?\b", GpuPeak("A10", 31.2, 62.5, 125.0, 125.0, _DS + " (A10)")),
    # Ada data centre.
    (r"l40s", GpuPeak("L40S", 91.6, 183.0, 362.05, 362.05, _DS + " (L40S)")),
    (r"\bl4\b", GpuPeak("L4", 30.3, 60.0, 121.0, 121.0, _DS + " (L4)")),
    # Turing / Volta: no TF32, no BF16; fp16 = tensor-core mixed precision.
    (r"\bt4\b", GpuPeak("T4", 8.1, None, None, 65.0, _DS + " (T4)")),
    (r"v100s", GpuPeak("V100S PCIe", 16.4, None, None, 130.0, _DS + " (V100S PCIe)")),
    (r"v100.*pcie", GpuPeak("V100 PCIe", 14.0, None, None, 112.0, _DS + " (V100 PCIe)")),
    (r"v100", GpuPeak("V100 SXM2", 15.7, None, None, 125.0, _DS + " (V100 SXM2)")),
    # GeForce: tensor figures with FP32 accumulate (half the FP16-accumulate rate).
    (r"rtx 3090", GpuPeak("RTX 3090", 35.6, 35.6, 71.0, 71.0, "NVIDIA Ampere GA102 whitepaper (RTX 3090)")),
    (r"rtx 4090", GpuPeak("RTX 4090", 82.6, 82.6, 165.2, 165.2, "NVIDIA Ada Lovelace whitepaper (RTX 4090)")),
]


def lookup(device_name: str) -> GpuPeak | None:
    """The peak figures of a GPU from its name as CUDA reports it, or None when unknown."""
    text = device_name.lower().replace("_", " ")
    for pattern, peak in _TABLE:
        if re.search(pattern, text):
            return peak
    return None


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Dense peak TFLOP/s of ``device_name`` at ``precision`` (None: unknown GPU or no support)."""
    peak = lookup(device_name)
    return None if peak is None else peak.for_precision(precision)


def known_gpus() -> list[GpuPeak]:
    """Every GPU of the table, in lookup order."""
    return [p for _, p in _TABLE]
