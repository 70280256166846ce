"""What every sharded job does alike: name its model, threat and data in the run's key, refuse a live
model where workers must load artifacts, and turn the job's model into a classifier on a worker."""

from __future__ import annotations

import hashlib
from typing import Any

import torch

from bastion.engine.engines import Engine, LocalEngine
from bastion.engine.model_ref import ModelRef, TabularModelRef, TextModelRef
from bastion.errors import ModelContractError
from bastion.threat import ThreatModel

_REFS = (ModelRef, TextModelRef, TabularModelRef)  # models named by their artifacts

__all__ = ["data_digest", "model_key", "require_artifact", "threat_key", "worker_model"]


def model_key(model: Any) -> dict[str, Any]:
    """A :class:`ModelRef`'s spec and file hashes; a live model (local engine) by its class, the sha256 of
    its parameters and, for a remote model, its address."""
    if isinstance(model, _REFS):
        return model.to_dict()
    h = hashlib.sha256()
    module = getattr(model, "module", model)
    state = module.state_dict() if hasattr(module, "state_dict") else {}
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    endpoint = getattr(getattr(model, "endpoint", None), "spec", None)
    return {"class": type(model).__name__, "parameters_sha256": h.hexdigest(), "endpoint": endpoint}


def threat_key(threat: ThreatModel) -> dict[str, Any]:
    return {"norm": threat.norm.value, "epsilon": threat.epsilon, "bounds": list(threat.bounds)}


def data_digest(*tensors: torch.Tensor) -> str:
    """sha256 over the tensors' shapes, dtypes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def require_artifact(model: Any, engine: Engine, *, what: str = "a live model") -> None:
    """Only the local engine takes a live model (or a Python factory); the others load or build it on each
    worker from its artifact, never from a pickled object."""
    if not isinstance(model, _REFS) and not isinstance(engine, LocalEngine):
        raise ModelContractError(
            f"the {engine.name} engine loads the model on each worker from its files: pass "
            f"bastion.engine.ModelRef.create('zoo:NAME' or 'model.py:factory', weights=...), not {what}"
        )


def worker_model(model: Any) -> tuple[Any, torch.device]:
    """The classifier a task runs (a :class:`ModelRef` loaded once per process) and its device."""
    clf = model.load() if isinstance(model, _REFS) else model
    return clf, getattr(clf, "device", torch.device("cpu"))
