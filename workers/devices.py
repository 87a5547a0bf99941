"""Which devices a worker trains on, checked when it starts: a typo or a missing GPU is an
error on the command line, not a failed trial per claim.

torch is imported only when a CUDA device is asked for, so a CPU worker starts instantly.
"""

from __future__ import annotations

import re

_DEVICE = re.compile(r"^(cpu|cuda|cuda:\d+)$")


class DeviceError(ValueError):
    """A device the worker cannot use; the message names the option and what to do."""


def worker_devices(device: str | None, gpus: str | None) -> list[str]:
    """The devices named by ``--device`` or ``--gpus``, each checked to exist here.

    ``--gpus`` is a comma-separated list of CUDA indexes (``0,1``) or ``all``; one trial runs
    on each. Without either option a worker trains on the CPU.
    """
    if gpus is not None:
        if device is not None:
            raise DeviceError("give either --device or --gpus, not both")
        return _gpu_list(gpus)
    device = device or "cpu"
    if not _DEVICE.match(device):
        raise DeviceError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        _check_gpu(index, f"--device {device}")
    return [device]


def slots(devices: list[str], concurrency: int) -> list[str]:
    """One entry per trial run at once: ``concurrency`` trials on each device."""
    if concurrency < 1:
        raise DeviceError(f"--concurrency must be at least 1, got {concurrency}")
    return [d for d in devices for _ in range(concurrency)]


def bind(device: str) -> None:
    """Makes ``device`` the current CUDA device of this process (where un-placed tensors and
    CUDA's own buffers go); a no-op for the CPU."""
    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(torch.device(device))


def _gpu_list(gpus: str) -> list[str]:
    if gpus.strip() == "all":
        count = _cuda_count("--gpus all")
        return [f"cuda:{i}" for i in range(count)]
    indexes: list[int] = []
    for part in gpus.split(","):
        part = part.strip()
        if not part.isdigit():
            raise DeviceError(f"--gpus {gpus!r}: expected GPU indexes such as 0,1 (or all)")
        if int(part) in indexes:
            raise DeviceError(f"--gpus {gpus!r}: GPU {part} is listed twice")
        indexes.append(int(part))
    for i in indexes:
        _check_gpu(i, f"--gpus {gpus}")
    return [f"cuda:{i}" for i in indexes]


def _check_gpu(index: int, option: str) -> None:
    count = _cuda_count(option)
    if index >= count:
        raise DeviceError(
            f"{option}: GPU {index} does not exist; this machine has {count} "
            f"(cuda:0..cuda:{count - 1})"
        )


def _cuda_count(option: str) -> int:
    try:
        import torch
    except ImportError:
        raise DeviceError(
            f"{option}: torch is not installed (pip install 'hpsearch[worker]')"
        ) from None
    if not torch.cuda.is_available():
        build = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
        raise DeviceError(
            f"{option}: CUDA is not available on this machine (torch {torch.__version__}, "
            f"{build}); use --device cpu"
        )
    count: int = torch.cuda.device_count()
    return count
