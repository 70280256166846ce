"""Where an audit ran: versions, device, and content hashes of the model and data it saw."""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

__all__ = ["environment", "tensor_sha256"]


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """sha256 over the tensors' shapes, dtypes and bytes (CPU, contiguous), in order."""
    h = hashlib.sha256()
    for t in tensors:
        c = t.detach().cpu().contiguous()
        h.update(f"{tuple(c.shape)}|{c.dtype}|".encode())
        h.update(c.view(-1).view(torch.uint8).numpy().tobytes() if c.numel() else b"")
    return h.hexdigest()


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "bastion": _version("bastion"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
    }
