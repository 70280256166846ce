"""Reference (shadow) models for membership inference: a seeded in/out assignment and the runner.

LiRA (Carlini et al. 2022), RMIA (Zarifzadeh et al. 2024) and the shadow-model attack (Shokri et al.
2017) compare the target's output on x with the outputs of reference models trained with and without x.
Here the references are trained on a *population* dataset (N examples) by :func:`bastion.harden`
(method ``standard``, the project's one training loop), each on the rows its line of the assignment
keeps:

- :class:`Assignment`: ``keep`` (R, N) bool plus its seed. Every example is IN for exactly R/2 models
  (R even; floor or ceil at random for odd R, so one model keeps a random half), as in LiRA's code.
- :func:`train_reference`: one task, a pure function of (factory, population, keep row, seed, config):
  what a distributed engine runs per model.
- :func:`train_references`: runs the tasks into a folder (``reference-007.safetensors`` with its card,
  and ``assignment.json``), skipping references already saved there (resume); :func:`load_references`
  reads a folder back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion._files import atomic_write
from bastion.data.dataset import Dataset
from bastion.defenses.training.config import TrainingConfig
from bastion.errors import DataError, ModelContractError
from bastion.model import TorchClassifier

__all__ = [
    "Assignment",
    "Factory",
    "ReferenceModels",
    "load_references",
    "train_reference",
    "train_references",
]

Factory = Callable[[], nn.Module | TorchClassifier]
"""Builds a fresh (untrained) model: an ``nn.Module`` returning logits, or a ready TorchClassifier
(whose normalisation the references keep)."""

ASSIGNMENT_FILE = "assignment.json"


def _weights_name(index: int) -> str:
    return f"reference-{index:03d}.safetensors"


@dataclass(frozen=True)
class Assignment:
    """Which population examples each reference model trains on: ``keep`` (R, N) bool, from ``seed``."""

    keep: torch.Tensor
    seed: int

    def __post_init__(self) -> None:
        if self.keep.dtype != torch.bool or self.keep.dim() != 2 or 0 in self.keep.shape:
            raise DataError(f"an assignment is a non-empty (models, N) bool matrix, got {self.keep.dtype}")

    @classmethod
    def random(cls, n_models: int, n: int, seed: int = 0) -> Assignment:
        """Each example IN for R/2 of the R models (a uniformly random subset of them)."""
        if n_models < 1 or n < 2:
            raise DataError(f"need at least 1 model and 2 examples, got {n_models} and {n}")
        g = torch.Generator().manual_seed(seed)
        rank = torch.rand(n_models, n, generator=g).argsort(0).argsort(0)  # per column: a permutation
        count = torch.full((n,), n_models // 2)
        if n_models % 2:
            count += torch.randint(0, 2, (n,), generator=g)
        return cls(rank < count, int(seed))

    @property
    def n_models(self) -> int:
        return int(self.keep.shape[0])

    @property
    def n(self) -> int:
        return int(self.keep.shape[1])

    def to_dict(self) -> dict[str, Any]:
        rows = ["".join("1" if v else "0" for v in row) for row in self.keep.tolist()]
        return {"seed": self.seed, "n_models": self.n_models, "n": self.n, "keep": rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Assignment:
        try:
            keep = torch.tensor([[c == "1" for c in row] for row in data["keep"]], dtype=torch.bool)
            return cls(keep, int(data["seed"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"malformed assignment ({exc}); delete {ASSIGNMENT_FILE} and retrain") from None


def fingerprint(data: Dataset) -> str:
    """sha256 of a dataset's inputs (float32) and labels (int64): which population an assignment indexes."""
    h = hashlib.sha256()
    h.update(data.x.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(data.y.detach().cpu().long().contiguous().numpy().tobytes())
    return h.hexdigest()


def _build(factory: Factory, seed: int) -> TorchClassifier | nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = factory()
    if not isinstance(built, nn.Module | TorchClassifier):
        raise ModelContractError(f"the factory must return an nn.Module, got {type(built).__name__}")
    return built


def train_reference(
    factory: Factory,
    population: Dataset,
    keep: torch.Tensor,
    *,
    seed: int,
    config: TrainingConfig,
    method: str = "standard",
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Train one reference model on ``population`` rows where ``keep`` (N,) is True, from a fresh
    ``factory()`` initialised with ``seed``, through ``bastion.harden(method=method, **options)``
    (``standard`` by default; ``dp-sgd`` with ``target_epsilon``... when the attacker knows the target
    was trained privately); returns its :class:`~bastion.defenses.training.harden.HardenResult`. A pure
    function of its arguments (same arguments, same weights on one device and torch build). No rows are
    held out for validation: every IN example must be trained on for the assignment to be true."""
    from bastion.defenses.training.harden import harden

    if keep.shape != (len(population),) or keep.dtype != torch.bool:
        raise DataError(f"keep must be a ({len(population)},) bool tensor, got {tuple(keep.shape)}")
    if not bool(keep.any()):
        raise DataError("a reference model needs at least one training example (its keep row is empty)")
    cfg = replace(config, seed=int(seed), validation=0.0)
    subset = population.subset(keep.nonzero().flatten())
    return harden(
        _build(factory, seed), subset, method=method, config=cfg, from_scratch=True, **dict(options or {})
    )


@dataclass(frozen=True)
class ReferenceModels:
    """Trained reference models (R) with the assignment over ``population`` they were trained from."""

    models: tuple[TorchClassifier, ...]
    assignment: Assignment
    population: Dataset
    folder: Path | None = None

    def __len__(self) -> int:
        return len(self.models)

    def __post_init__(self) -> None:
        if len(self.models) != self.assignment.n_models or self.assignment.n != len(self.population):
            raise DataError(
                f"{len(self.models)} models and {len(self.population)} population examples do not match "
                f"an assignment of {self.assignment.n_models} models over {self.assignment.n} examples"
            )


def _read_assignment(folder: Path) -> tuple[Assignment, dict[str, Any]] | None:
    path = folder / ASSIGNMENT_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return Assignment.from_dict(data), data


def _load_one(factory: Factory, path: Path, population: Dataset) -> TorchClassifier:
    from safetensors.torch import load_file

    built = _build(factory, 0)
    base = built if isinstance(built, TorchClassifier) else None
    module = built.module if isinstance(built, TorchClassifier) else built
    try:
        module.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelContractError(f"{path.name} does not fit the factory's model: {first}") from None
    return TorchClassifier(
        module,
        bounds=population.bounds,
        num_classes=population.num_classes,
        mean=None if base is None else base.mean,
        std=None if base is None else base.std,
        name=path.stem,
    )


def train_references(
    factory: Factory,
    population: Dataset,
    n_models: int,
    folder: str | Path,
    *,
    seed: int = 0,
    config: TrainingConfig | None = None,
    method: str = "standard",
    options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    engine: Any = None,
) -> ReferenceModels:
    """Train ``n_models`` references on a seeded assignment over ``population``, saved in ``folder``.

    Reference ``i`` trains with seed ``config.seed + i`` (``config`` defaults to ``TrainingConfig()``)
    by ``harden(method=method, **options)`` (see :func:`train_reference`). With an ``engine``
    (``"local"``, ``"ray"`` or a :mod:`bastion.engine` engine) each reference still to train is one task
    (on Ray ``factory`` is a :class:`bastion.engine.ModelRef`, built fresh on the worker); the driver
    draws the assignment and writes every model as it arrives, so the masks are the same on any engine.
    A folder that already holds an assignment for the same population, model count, seed and training
    settings is resumed: saved references are loaded, not retrained. Anything else raises DataError.
    ``progress(done, total)`` is called after each model.
    """
    cfg = config or TrainingConfig()
    root = Path(folder).expanduser()
    assignment = Assignment.random(n_models, len(population), seed)
    population_hash = fingerprint(population)
    recipe: dict[str, Any] = cfg.to_dict()
    if method != "standard" or options:  # only then: folders written before methods existed still resume
        recipe = {**recipe, "method": method, "options": dict(options or {})}
    training = json.loads(json.dumps(recipe))  # as stored (tuples become lists)
    existing = _read_assignment(root)
    if existing is not None:
        old, meta = existing
        if old.seed != seed or old.n_models != n_models or meta.get("population") != population_hash:
            raise DataError(
                f"{root} holds references for another assignment (seed {old.seed}, {old.n_models} models, "
                "population differs or not); use another folder or delete it"
            )
        if meta.get("training") != training:
            raise DataError(
                f"{root} holds references trained with other settings ({meta.get('training')}); "
                "use another folder or delete it"
            )
    else:
        payload = {
            **assignment.to_dict(),
            "population": population_hash,
            "population_name": population.name,
            "training": training,
        }
        text = json.dumps(payload) + "\n"
        atomic_write(root / ASSIGNMENT_FILE, lambda fh: fh.write(text))
    if engine is not None:
        _train_on_engine(engine, factory, population, assignment, root, cfg, method, options, progress)
    models = []
    for i in range(n_models):
        path = root / _weights_name(i)
        if not path.is_file():
            result = train_reference(
                factory, population, assignment.keep[i], seed=cfg.seed + i, config=cfg, method=method,
                options=options,
            )  # fmt: skip
            result.save(path)
        models.append(_load_one(factory, path, population))
        if progress is not None and engine is None:
            progress(i + 1, n_models)
    return ReferenceModels(tuple(models), assignment, population, root)


@dataclass(frozen=True)
class _ReferenceJob:
    """What each reference task needs: the architecture (a ModelRef or, locally, a factory), the
    population (sent once), the assignment's rows and the recipe."""

    factory: Any
    population: Dataset
    keep: torch.Tensor
    config: TrainingConfig
    method: str
    options: dict[str, Any]


def _reference_task(job: _ReferenceJob, shard: Any, payload: Any, batch_size: int) -> Any:
    """One reference model (shard ``i`` = reference ``i``): its weights and card, for the driver to write."""
    from bastion.engine import ShardOutput

    i = shard.index
    cfg = job.config
    result = train_reference(
        job.factory,
        job.population,
        job.keep[i],
        seed=cfg.seed + i,
        config=cfg,
        method=job.method,
        options=job.options,
    )
    state = {k: v.detach().cpu().contiguous() for k, v in result.module.state_dict().items()}
    return ShardOutput(state, {"card": json.loads(json.dumps(result.card, default=str))})


def _train_on_engine(engine: Any, factory: Any, population: Dataset, assignment: Assignment, root: Path,
                     cfg: TrainingConfig, method: str, options: Mapping[str, Any] | None,
                     progress: Callable[[int, int], None] | None) -> None:  # fmt: skip
    from bastion.defenses.training.harden import save_weights
    from bastion.engine import Shard, get_engine
    from bastion.engine._jobs import require_artifact

    chosen = get_engine(engine)
    require_artifact(factory, chosen, what="a Python factory")
    todo = [i for i in range(assignment.n_models) if not (root / _weights_name(i)).is_file()]
    done = assignment.n_models - len(todo)
    if progress is not None:
        progress(done, assignment.n_models)

    def keep(shard: Any, out: Any) -> None:
        nonlocal done
        save_weights(out.tensors, out.meta["card"], root / _weights_name(shard.index))
        done += 1
        if progress is not None:
            progress(done, assignment.n_models)

    job = _ReferenceJob(factory, population, assignment.keep, cfg, method, dict(options or {}))
    chosen.run(_reference_task, job, [(Shard(i, i, i + 1), None) for i in todo], cfg.batch_size, keep)


def load_references(folder: str | Path, factory: Factory, population: Dataset) -> ReferenceModels:
    """Read references saved by :func:`train_references`; all of them must be present."""
    root = Path(folder).expanduser()
    existing = _read_assignment(root)
    if existing is None:
        raise DataError(f"{root} holds no {ASSIGNMENT_FILE}; train the references with train_references")
    assignment, meta = existing
    if meta.get("population") != fingerprint(population):
        raise DataError(f"the references in {root} were trained on another population than {population.name}")
    missing = [i for i in range(assignment.n_models) if not (root / _weights_name(i)).is_file()]
    if missing:
        raise DataError(
            f"{root} lacks {len(missing)} reference model(s) (first: {_weights_name(missing[0])})"
        )
    models = tuple(
        _load_one(factory, root / _weights_name(i), population) for i in range(assignment.n_models)
    )
    return ReferenceModels(models, assignment, population, root)
