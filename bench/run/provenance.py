"""What a record needs to be reproducible: library versions, the device, the git commit."""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ["numpy", "torch", "torchvision", "scikit-image", "scikit-learn", "scipy", "pandas"]
#: the OpenCV wheels that provide ``cv2`` (segbench depends on the contrib one; any of them may be what is installed)
_OPENCV_WHEELS = ["opencv-contrib-python-headless", "opencv-python-headless", "opencv-contrib-python", "opencv-python"]
REPO_DIR = Path(__file__).resolve().parents[2]


@functools.cache
def versions() -> dict[str, str]:
    from bench import __version__

    out = {"python": platform.python_version(), "segbench": __version__}
    for pkg in _PACKAGES:
        out[pkg] = _version(pkg)
    out["opencv"] = next((f"{v} ({w})" for w in _OPENCV_WHEELS if (v := _version(w)) != "not installed"), "not installed")
    try:
        import torch

        out["cuda"] = torch.version.cuda or "none"
        if torch.cuda.is_available():
            out["cudnn"] = str(torch.backends.cudnn.version())
            out["driver"] = _nvidia_driver()
    except ImportError:
        pass
    return out


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def _nvidia_driver() -> str:
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10,
        )
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """A human-readable device name, e.g. 'cuda: NVIDIA H100 80GB HBM3' or 'cpu: AMD EPYC ... (2 threads)'."""
    if device.startswith("cuda"):
        import torch

        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    import os

    try:
        import torch

        threads = torch.get_num_threads()
    except ImportError:
        threads = os.cpu_count()
    return f"cpu: {cpu_name()} ({threads} threads)"


def _segbench_checkout() -> Path | None:
    """The source checkout: where this file lives (editable/source use) or, after a plain
    ``pip install .``, the current folder when it is a segbench checkout."""
    for candidate in (REPO_DIR, Path.cwd()):
        pyproject = candidate / "pyproject.toml"
        if (candidate / ".git").exists() and pyproject.is_file() and 'name = "segbench"' in pyproject.read_text():
            return candidate
    return None


@functools.cache
def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the segbench checkout, with '-dirty' when it has uncommitted changes."""
    repo = repo or _segbench_checkout()
    if repo is None:
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None
