"""Models that travel: a worker rebuilds the model from its artifact, never from a pickled object.

A :class:`ModelRef` names the model the way the command line does (``zoo:NAME``, ``FILE.py:factory`` with
``weights``, a TorchScript file) together with the sha256 of every file it reads, taken on the driver when
the run starts. A worker re-hashes the files before it loads them and refuses a model that changed since
(a retrained checkpoint, another machine's copy), so every shard of a run attacks the same weights.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.errors import ModelContractError
from bastion.model import TorchClassifier

__all__ = ["ModelRef", "TabularModelRef", "TextModelRef"]


def _files_of(spec: str, weights: str | None) -> list[str]:
    """The local files ``spec`` and ``weights`` read (a zoo model checks its own hashes)."""
    files = [] if weights is None else [weights]
    if spec.startswith("zoo:"):
        return files
    target = spec.rpartition(":")[0] if ":" in spec else spec
    if target.endswith(".py") or Path(spec).is_file():
        files.insert(0, target if target.endswith(".py") else spec)
    return files


def _absolute_factory(spec: str) -> str:
    """``FILE.py:factory`` with FILE made absolute (workers may run elsewhere); other specs unchanged."""
    target, sep, factory = spec.rpartition(":")
    return f"{Path(target).resolve()}:{factory}" if sep and target.endswith(".py") else spec


def _stats(value: float | Sequence[float] | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    return (float(value),) if isinstance(value, int | float) else tuple(float(v) for v in value)


@dataclass(frozen=True)
class ModelRef:
    """``ModelRef.create(spec, weights=..., bounds=..., mean=..., std=..., device=...)`` on the driver;
    ``ref.load()`` on a worker (cached per process). ``sha256`` maps each file read to its digest."""

    spec: str
    weights: str | None = None
    bounds: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    device: str = "cpu"
    sha256: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def create(
        cls,
        spec: str,
        *,
        weights: str | Path | None = None,
        bounds: Sequence[float] = (0.0, 1.0),
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        device: str = "cpu",
    ) -> ModelRef:
        """A reference whose files are hashed now (absolute paths: workers may run elsewhere)."""
        from bastion.loading import sha256_file

        if spec.startswith("oip:"):
            raise ModelContractError(f"{spec} is a remote model; the shard runner loads local artifacts")
        w = None if weights is None else str(Path(weights).resolve())
        if spec.rpartition(":")[0].endswith(".py"):
            spec = _absolute_factory(spec)
        elif not spec.startswith("zoo:") and Path(spec).is_file():
            spec = str(Path(spec).resolve())
        digests = tuple((f, sha256_file(f)) for f in _files_of(spec, w))
        low, high = (float(b) for b in bounds)
        return cls(spec, w, (low, high), _stats(mean), _stats(std), device, digests)

    def verify(self) -> None:
        """Raise :class:`ModelContractError` if a file differs from the driver's copy."""
        _verify(self.sha256)

    def load(self) -> TorchClassifier:
        """The model, verified, on ``device`` (one load per process and reference)."""
        return _load(self)

    def build(self) -> TorchClassifier:
        """A fresh copy of the model, verified (not cached: for code that trains or changes it)."""
        from bastion.loading import load_model

        self.verify()
        model = load_model(self.spec, weights=self.weights, bounds=self.bounds, mean=self.mean, std=self.std)
        return model.to(self.device)

    __call__ = build  # a ModelRef is a factory: ``ref()`` builds a fresh model (reference training)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "weights": self.weights, "bounds": list(self.bounds),
                "mean": self.mean, "std": self.std, "sha256": dict(self.sha256)}  # fmt: skip


@functools.lru_cache(maxsize=4)
def _load(ref: ModelRef) -> TorchClassifier:
    return ref.build()


def _verify(sha256: tuple[tuple[str, str], ...]) -> None:
    from bastion.loading import sha256_file

    for path, digest in sha256:
        if not Path(path).is_file():
            raise ModelContractError(
                f"{path} is missing on this worker; every worker needs the model files at the same path"
            )
        found = sha256_file(path)
        if found != digest:
            raise ModelContractError(
                f"{path} changed since the run started (sha256 {found[:12]}, expected {digest[:12]}); "
                "rerun with the file the run started from"
            )


@dataclass(frozen=True)
class TextModelRef:
    """A text model that travels: ``TextModelRef.create("zoo:sst2-wordcnn" or "model.py:factory",
    sanitise=False)`` on the driver, ``ref.load()`` on a worker (verified, cached per process).
    ``sanitise`` puts the model behind the default :class:`~bastion.text.SanitisedTextClassifier`."""

    spec: str
    sanitise: bool = False
    sha256: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def create(cls, spec: str, *, sanitise: bool = False) -> TextModelRef:
        from bastion.loading import sha256_file

        if spec.startswith("oip:"):
            raise ModelContractError(f"{spec} is a remote model; the shard runner loads local artifacts")
        spec = _absolute_factory(spec)
        digests = tuple((f, sha256_file(f)) for f in _files_of(spec, None))
        return cls(spec, bool(sanitise), digests)

    def verify(self) -> None:
        """Raise :class:`ModelContractError` if a file differs from the driver's copy."""
        _verify(self.sha256)

    def load(self) -> Any:
        """The text classifier, verified (one load per process and reference)."""
        return _load_text(self)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "sanitise": self.sanitise, "sha256": dict(self.sha256)}


@functools.lru_cache(maxsize=4)
def _load_text(ref: TextModelRef) -> Any:
    from bastion.text.specs import load_text_model_spec

    ref.verify()
    model = load_text_model_spec(ref.spec)
    if ref.sanitise:
        from bastion.text.sanitise import SanitisedTextClassifier

        model = SanitisedTextClassifier(model)
    return model


@dataclass(frozen=True)
class TabularModelRef:
    """A tabular model that travels: ``TabularModelRef.create("model.py:factory", schema)``; a worker
    rebuilds the schema from its JSON form and the model from the spec over it (``ref.load()``)."""

    spec: str
    schema_json: str
    sha256: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def create(cls, spec: str, schema: Any) -> TabularModelRef:
        import json

        from bastion.loading import sha256_file

        spec = _absolute_factory(spec)
        digests = tuple((f, sha256_file(f)) for f in _files_of(spec, None))
        return cls(spec, json.dumps(schema.to_dict(), sort_keys=True), digests)

    def verify(self) -> None:
        """Raise :class:`ModelContractError` if a file differs from the driver's copy."""
        _verify(self.sha256)

    def load(self) -> Any:
        """The tabular classifier, verified (one load per process and reference)."""
        return _load_tabular(self)

    def to_dict(self) -> dict[str, Any]:
        import hashlib

        schema = hashlib.sha256(self.schema_json.encode()).hexdigest()
        return {"spec": self.spec, "schema_sha256": schema, "sha256": dict(self.sha256)}


@functools.lru_cache(maxsize=4)
def _load_tabular(ref: TabularModelRef) -> Any:
    import json

    from bastion.tabular import TabularSchema
    from bastion.tabular.specs import load_tabular_model_spec

    ref.verify()
    return load_tabular_model_spec(ref.spec, TabularSchema.from_dict(json.loads(ref.schema_json)))
