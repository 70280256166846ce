"""What a poisoning attack returns: the poisoned dataset plus the ground truth of what it touched.

Saved as an .npz that ``bastion.data.load_dataset("npz:FILE")`` reads back as a dataset (it ignores the
extra keys), while :func:`load_poison_truth` reads the ground truth for detectors and benchmarks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion._files import atomic_write
from bastion.attacks.poisoning.triggers import Trigger
from bastion.data._util import existing_path, read_npz
from bastion.data.dataset import Dataset
from bastion.errors import DataError

__all__ = ["PoisonResult", "load_poison_truth"]

TRUTH_KEYS = ("poisoned", "original_y", "poison")


@dataclass(frozen=True, eq=False)
class PoisonResult:
    """A poisoned copy of a dataset and which samples were touched.

    - ``dataset``: N samples (the input's N, or more when a backdoor appends); never the caller's tensors
      modified in place.
    - ``poisoned`` (N,) bool: the samples the attack changed (input, label or both); everything else is
      the original sample, bit for bit.
    - ``original_labels`` (N,) long: the labels before the attack (for appended samples: the label of the
      clean sample they were made from).
    - ``attack``, ``params`` (JSON-ready), ``target`` (the backdoor / flip target class or None),
      ``trigger`` (None for label flipping), ``seed``.
    """

    dataset: Dataset
    poisoned: torch.Tensor
    original_labels: torch.Tensor
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    target: int | None = None
    trigger: Trigger | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        n = len(self.dataset)
        if self.poisoned.dtype != torch.bool or tuple(self.poisoned.shape) != (n,):
            raise DataError(
                f"poisoned must be a ({n},) bool mask, got {self.poisoned.dtype} {tuple(self.poisoned.shape)}"
            )
        if tuple(self.original_labels.shape) != (n,):
            raise DataError(
                f"original_labels must have shape ({n},), got {tuple(self.original_labels.shape)}"
            )
        object.__setattr__(self, "original_labels", self.original_labels.long())

    @property
    def n_poisoned(self) -> int:
        return int(self.poisoned.sum())

    @property
    def rate(self) -> float:
        """Share of the returned dataset that was touched."""
        return self.n_poisoned / len(self.dataset) if len(self.dataset) else 0.0

    @property
    def indices(self) -> torch.Tensor:
        """Indices (n_poisoned,) of the touched samples, ascending."""
        return self.poisoned.nonzero().flatten()

    def info(self) -> dict[str, Any]:
        """JSON-ready description: attack, params, target, seed, trigger, counts."""
        return {
            "attack": self.attack,
            "params": self.params,
            "target": self.target,
            "seed": self.seed,
            "trigger": None if self.trigger is None else self.trigger.params(),
            "n_samples": len(self.dataset),
            "n_poisoned": self.n_poisoned,
            "rate": self.rate,
            "bounds": list(self.dataset.bounds),
        }

    def save(self, path: str | Path) -> Path:
        """Write the poisoned dataset and its ground truth to ``path`` (.npz), atomically; return the path.

        Keys: ``x`` (float32, the dataset's layout, e.g. NCHW), ``y``, ``class_names``, ``poisoned``,
        ``original_y``, ``poison`` (JSON of :meth:`info`) and, with a trigger, ``trigger_mask`` and
        ``trigger_pattern`` (C, H, W). The loader infers bounds (0, 1) when every value lies in [0, 1];
        other bounds come back as the data's (min, max).
        """
        target = Path(path).expanduser()
        if target.suffix != ".npz":
            raise DataError(f"poisoned data are written as .npz: name the file *.npz, not {target.name}")
        ds = self.dataset
        arrays: dict[str, np.ndarray] = {
            "x": ds.x.detach().cpu().numpy().astype(np.float32, copy=False),
            "y": ds.y.cpu().numpy().astype(np.int64),
            "class_names": np.asarray(ds.class_names, dtype=str),
            "poisoned": self.poisoned.cpu().numpy(),
            "original_y": self.original_labels.cpu().numpy().astype(np.int64),
            "poison": np.asarray(json.dumps(self.info())),
        }
        if self.trigger is not None:
            shape = tuple(ds.x.shape[1:])
            arrays["trigger_mask"] = self.trigger.mask(shape).numpy()
            arrays["trigger_pattern"] = self.trigger.pattern(shape, ds.bounds).numpy()
        atomic_write(target, lambda fh: np.savez_compressed(fh, **arrays), "wb")  # type: ignore[arg-type]
        return target


def load_poison_truth(path: str | Path) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``(poisoned (N,) bool, original_y (N,) long, info)`` from a file written by :meth:`PoisonResult.save`.

    ``info`` is the saved :meth:`PoisonResult.info`, plus ``trigger_mask`` / ``trigger_pattern`` tensors
    when the attack used a trigger. Load the data themselves with ``load_dataset("npz:FILE")``.
    """
    source = existing_path(path, "an .npz written by `bastion poison`", directory=False)
    try:
        arrays = read_npz(source, TRUTH_KEYS, optional=("trigger_mask", "trigger_pattern"))
    except DataError as exc:
        raise DataError(f"{exc} (is this a file written by `bastion poison` / PoisonResult.save?)") from None
    try:
        info: dict[str, Any] = json.loads(str(arrays["poison"][()]))
    except (json.JSONDecodeError, IndexError) as exc:
        raise DataError(f"{source}: the 'poison' entry is not the JSON PoisonResult.save writes") from exc
    poisoned = torch.from_numpy(arrays["poisoned"].astype(bool))
    original = torch.from_numpy(arrays["original_y"].astype(np.int64))
    if poisoned.dim() != 1 or original.shape != poisoned.shape:
        raise DataError(f"{source}: poisoned and original_y must be two (N,) arrays of the same length")
    for key in ("trigger_mask", "trigger_pattern"):
        if key in arrays:
            info[key] = torch.from_numpy(arrays[key])
    return poisoned, original, info
