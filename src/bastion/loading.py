"""The one place that reads model artifacts. Artifacts are data, never code.

- Weights: ``.safetensors`` (preferred), or ``.pt``/``.pth``/``.bin`` read only with
  ``torch.load(weights_only=True)``, which refuses any pickle that references code or objects.
- Architectures: built-in (``zoo:NAME``), the user's own Python factory (``file.py:factory`` or
  ``package.module:factory``; their code, run because they named it), or a TorchScript archive.
- A pickled ``nn.Module`` or any other pickle that needs code to load raises
  :class:`~bastion.errors.UnsafeArtifactError`; it is never unpickled.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import pickle
import re
import sys
import weakref
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import torch
from torch import nn

from bastion.errors import DataError, ModelContractError, UnsafeArtifactError
from bastion.model import Classifier, TorchClassifier
from bastion.threat import Bounds

__all__ = [
    "ModelSource",
    "factory_object",
    "load_model",
    "load_victim",
    "model_source",
    "read_state_dict",
    "sha256_file",
]

PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin"})
SAFE_ALTERNATIVES = (
    "save weights with safetensors.torch.save_file(model.state_dict(), 'model.safetensors') or "
    "torch.save(model.state_dict(), 'model.pt') and load them with --weights next to an architecture "
    "('file.py:factory' or 'zoo:NAME'), or export the whole model as TorchScript "
    "(torch.jit.save(torch.jit.script(model), 'model.pt'))"
)
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")
_FACTORY_SPEC = re.compile(r"^(?P<target>.+):(?P<factory>[A-Za-z_]\w*)$")
_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class ModelSource:
    """Where :func:`load_model` got a model: what an audit reports in its model block (and ``BA109``).

    ``weights_loaded`` is False only for a factory built without ``weights`` whose parameters differ
    from one build to the next: its random initialisation, not a trained model. A factory that loads
    (or seeds) its own weights builds the same parameters twice and counts as loaded.
    """

    spec: str
    kind: Literal["zoo", "factory", "torchscript"]
    weights_file: str | None
    weights_loaded: bool
    bounds_declared: bool = False
    """True when the model chose its own bounds (a zoo entry, a factory's ready TorchClassifier), so the
    ``bounds`` argument of :func:`load_model` was not applied."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "weights_file": self.weights_file,
            "weights_loaded": self.weights_loaded,
            "bounds_declared": self.bounds_declared,
        }


# Keyed by the returned classifier itself, so the fact travels with the object without a new attribute
# on TorchClassifier; a classifier that is garbage-collected drops its entry.
_SOURCES: weakref.WeakKeyDictionary[TorchClassifier, ModelSource] = weakref.WeakKeyDictionary()


def model_source(model: object) -> ModelSource | None:
    """How ``model`` was loaded, if :func:`load_model` built it (or the model a defense wraps); else None."""
    for candidate in (model, getattr(model, "model", None)):
        if isinstance(candidate, TorchClassifier) and candidate in _SOURCES:
            return _SOURCES[candidate]
    return None


def _builds_at_random(target: str, factory: str, first: nn.Module) -> bool:
    """Whether a second build of the factory gives different parameters (a random initialisation).
    The second build draws from a forked RNG, so the caller's global RNG state is as after one build."""
    with torch.random.fork_rng(devices=[]):
        second = _build(target, factory)
    if isinstance(second, TorchClassifier):  # a factory may return a ready classifier
        second = second.module
    a, b = first.state_dict(), second.state_dict()
    if a.keys() != b.keys():
        return True
    return any(
        a[k].shape != b[k].shape or not torch.equal(a[k].detach().cpu(), b[k].detach().cpu()) for k in a
    )


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _existing_file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        state = "is not a file" if p.exists() else "does not exist"
        raise DataError(f"{p} {state}; expected {what}")
    return p


def _is_torchscript(path: Path) -> bool:
    # TorchScript archives carry compiled code next to their constants; torch.save archives do not.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _unsafe(path: Path, exc: Exception) -> UnsafeArtifactError:
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    why = f"it references {found.group(1)}" if found else "it holds Python objects, not just tensors"
    return UnsafeArtifactError(
        f"{path}: refusing to unpickle ({why}); loading it could run arbitrary code. "
        f"Safe alternatives: {SAFE_ALTERNATIVES}"
    )


def _tensor_dict(obj: object) -> dict[str, torch.Tensor] | None:
    if (
        isinstance(obj, dict)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        return dict(obj)
    return None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors by name from ``.safetensors``, or ``.pt``/``.pth``/``.bin`` via ``weights_only=True``.

    Also accepted: a checkpoint dict whose ``state_dict``/``model_state_dict``/``model`` entry is the
    state dict, and a TorchScript archive (its parameters and buffers). Tensors land on the CPU.
    Raises UnsafeArtifactError for pickles that need code, DataError for missing or unreadable files.
    """
    p = _existing_file(path, "model weights (.safetensors, or a state_dict saved as .pt/.pth/.bin)")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(f"{p}: not a readable safetensors file ({exc})") from exc
    if suffix not in PICKLE_SUFFIXES:
        raise DataError(f"{p}: unknown weights format {suffix!r}; use .safetensors, .pt, .pth or .bin")
    if _is_torchscript(p):
        return dict(_load_torchscript(p).state_dict())
    return _read_pickled_state(p)


def _read_pickled_state(p: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # The weights-only unpickler stops at the first global or opcode it does not allow, before
        # anything runs; we do not try to tell "malicious" from "merely unsupported": both are refused.
        raise _unsafe(p, exc) from exc
    except (RuntimeError, OSError, EOFError, ValueError, KeyError) as exc:
        raise DataError(f"{p}: not a readable torch.save file ({exc!r})") from exc
    state = _tensor_dict(obj)
    if state is None and isinstance(obj, dict):
        state = next((s for k in _CHECKPOINT_KEYS if (s := _tensor_dict(obj.get(k))) is not None), None)
    if state is None:
        raise DataError(
            f"{p}: holds a {type(obj).__name__}, not a state_dict (names -> tensors); {SAFE_ALTERNATIVES}"
        )
    return state


def _load_torchscript(path: Path) -> torch.jit.ScriptModule:
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise DataError(f"{path}: not a loadable TorchScript archive ({exc})") from exc
    # Deep-copying a ScriptModule clones parameters that require grad into non-leaf tensors, which
    # TorchClassifier then cannot freeze; this module is ours, so freeze it before anyone copies it.
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _import_file(path: Path) -> ModuleType:
    # A unique name per file keeps two user files called model.py apart; the file's folder is on
    # sys.path only while it runs, so it can import its siblings without leaving a trace.
    name = "bastion_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DataError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ModelContractError(f"{path}: importing it failed: {_one_line(exc)}") from exc
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(folder)
    return module


def _one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (with where, for a syntax error): errors stay one line."""
    text = str(exc).strip().splitlines()
    where = ""
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f" ({exc.filename}, line {exc.lineno})"
    return f"{type(exc).__name__}: {text[0] if text else ''}{where}".rstrip(": ")


def _required_arguments(fn: Callable[..., object]) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: just call them
        return []
    kinds = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )
    return [p.name for p in signature.parameters.values() if p.default is p.empty and p.kind in kinds]


def _call_factory(fn: Callable[..., object], label: str) -> object:
    """Run the user's factory with no arguments; its failures become one-line ModelContractErrors."""
    required = _required_arguments(fn)
    if required:
        raise ModelContractError(
            f"{label} needs argument(s) {', '.join(required)}, but a model spec calls the factory with "
            f"none; give them defaults, or name a factory without arguments that calls it"
        )
    try:
        return fn()
    except Exception as exc:
        raise ModelContractError(f"{label}() raised {_one_line(exc)}") from exc


def factory_object(target: str, factory: str) -> object:
    """What ``target:factory()`` returns: ``target`` a ``.py`` file or a dotted module name, the factory
    called with no arguments. The user's code, run because they named it; callers check the type."""
    if target.endswith(".py"):
        module = _import_file(_existing_file(target, "a Python file defining the model factory"))
    elif _MODULE_NAME.match(target):
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise DataError(
                f"cannot import module {target!r} ({exc}); check the name and PYTHONPATH"
            ) from exc
        except Exception as exc:
            raise ModelContractError(f"importing {target} failed: {_one_line(exc)}") from exc
    else:
        raise DataError(f"{target!r} is neither a .py file nor a dotted module name")
    fn = getattr(module, factory, None)
    if not callable(fn):
        defined = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
        )
        raise ModelContractError(
            f"{target} has no callable {factory!r}; it defines: {', '.join(defined) or 'no public callables'}"
        )
    return _call_factory(fn, f"{target}:{factory}")


def _build(target: str, factory: str) -> nn.Module | TorchClassifier:
    built = factory_object(target, factory)
    if not isinstance(built, nn.Module | TorchClassifier):
        raise ModelContractError(
            f"{target}:{factory}() returned {type(built).__name__}, not a torch.nn.Module or a "
            "bastion TorchClassifier"
        )
    return built


def _show_keys(keys: list[str], limit: int = 10) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _load_weights(module: nn.Module, weights: str | Path) -> None:
    state = read_state_dict(weights)
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelContractError(
            f"{weights} does not match the architecture: missing keys: {_show_keys(missing)}; "
            f"unexpected keys: {_show_keys(unexpected)}"
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise ModelContractError(f"{weights} does not match the architecture: {exc}") from exc


def load_victim(
    spec: str,
    *,
    weights: str | Path | None = None,
    bounds: Bounds = (0.0, 1.0),
    num_classes: int | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> Classifier:
    """What a black-box attack needs: a remote model for ``oip:http://host:port/models/NAME`` (an Open
    Inference Protocol endpoint, see :mod:`bastion.remote`; ``weights``, ``mean`` and ``std`` are refused
    there), otherwise :func:`load_model`'s classifier."""
    if spec.startswith("oip:"):
        from bastion.remote import load_remote

        return load_remote(spec, bounds=bounds, num_classes=num_classes, weights=weights, mean=mean, std=std)
    return load_model(spec, weights=weights, bounds=bounds, num_classes=num_classes, mean=mean, std=std)


def load_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    bounds: Bounds = (0.0, 1.0),
    num_classes: int | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> TorchClassifier:
    """A :class:`TorchClassifier` from a model spec.

    ``spec`` is ``zoo:NAME`` (built-in; the zoo entry sets bounds and normalisation, so those
    arguments are ignored), ``path/to/file.py:factory`` or ``package.module:factory`` (``factory()``,
    called with no arguments, returns an ``nn.Module``, or a ready :class:`TorchClassifier` whose bounds
    and normalisation are kept), or a TorchScript file. Failures in the user's code (import errors, a
    factory that needs arguments or raises) become one-line :class:`ModelContractError` messages.
    ``weights`` (a state dict, see :func:`read_state_dict`) is loaded strictly into the module: every
    key must match. A factory without ``weights`` is built twice, to tell a random initialisation from
    weights it loads itself; :func:`model_source` returns what was found.
    """
    weights_file = None if weights is None else str(weights)
    if spec.startswith("oip:"):
        raise ModelContractError(
            f"{spec} is a remote model: it answers outputs only, and this command needs the network itself "
            "(gradients, weights); remote models serve the black-box commands (extract, membership, invert, "
            "attack with a black-box attack such as square or hopskipjump)"
        )
    if spec.startswith("zoo:"):
        if mean is not None or std is not None:
            raise ModelContractError(
                f"{spec} normalises its inputs itself (the zoo entry sets mean and std); drop --mean/--std"
            )
        zoo = importlib.import_module("bastion.zoo")
        classifier: TorchClassifier = zoo.load(spec[len("zoo:") :])
        if weights is not None:
            _load_weights(classifier.module, weights)
        _SOURCES[classifier] = ModelSource(spec, "zoo", weights_file, True, bounds_declared=True)
        return classifier
    match = _FACTORY_SPEC.match(spec)
    loaded = True
    kind: Literal["factory", "torchscript"] = "torchscript"
    if match and (match["target"].endswith(".py") or _MODULE_NAME.match(match["target"])):
        target, factory = match["target"], match["factory"]
        built = _build(target, factory)
        if isinstance(built, TorchClassifier):
            ready = _ready_classifier(built, spec, weights, mean, std)
            random_init = weights is None and _builds_at_random(target, factory, ready.module)
            _SOURCES[ready] = ModelSource(
                spec, "factory", weights_file, not random_init, bounds_declared=True
            )
            return ready
        module = built
        name = f"{Path(target).stem if target.endswith('.py') else target}:{factory}"
        kind = "factory"
        loaded = weights is not None or not _builds_at_random(target, factory, module)
    else:
        path = _existing_file(
            spec, "a model: 'zoo:NAME', 'file.py:factory', 'package.module:factory' or TorchScript"
        )
        if path.suffix.lower() == ".safetensors":
            raise ModelContractError(
                f"{path} holds weights only, not an architecture; "
                "pass it as weights to 'file.py:factory' or 'zoo:NAME'"
            )
        if not _is_torchscript(path):
            # Reading it weights-only is safe and tells a plain state dict from a pickled model.
            _read_pickled_state(path)
            raise ModelContractError(
                f"{path} is a state dict (weights only), not a model; pass it as weights next to an "
                "architecture: 'file.py:factory' or 'zoo:NAME'"
            )
        module = _load_torchscript(path)
        name = path.stem
    if weights is not None:
        _load_weights(module, weights)
    out = TorchClassifier(module, bounds=bounds, num_classes=num_classes, mean=mean, std=std, name=name)
    _SOURCES[out] = ModelSource(spec, kind, weights_file, loaded)
    return out


def _ready_classifier(
    clf: TorchClassifier,
    spec: str,
    weights: str | Path | None,
    mean: float | Sequence[float] | None,
    std: float | Sequence[float] | None,
) -> TorchClassifier:
    """A factory that returns a TorchClassifier has chosen its bounds and normalisation: they are kept
    (the ``bounds`` argument is not applied), and a second normalisation is refused, not stacked."""
    if mean is not None or std is not None:
        raise ModelContractError(
            f"{spec} returns a TorchClassifier, which normalises its inputs itself; drop --mean/--std "
            "(or return the bare nn.Module and pass them here)"
        )
    if weights is not None:
        _load_weights(clf.module, weights)
    return clf
