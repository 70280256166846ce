"""What IBP can follow exactly, and the reasons it refuses everything else.

IBP bounds the plain composition of a network's leaf layers. That is the function the network
computes only when nothing changes it, so every module on the way is checked:

- its class is a supported torch layer or ``nn.Sequential``, or a subclass that adds nothing but
  ``__init__`` (a subclass that defines ``forward`` or any other method is refused);
- torch's own ``forward`` of that class (and ``nn.Module.__call__``) has not been replaced;
- the instance does not shadow a method (``layer.forward = ...``, a patched ``_conv_forward``);
- no forward hook or forward pre-hook is registered on it, and none globally
  (``torch.nn.modules.module.register_module_forward_hook``), and it is not parametrized;
- a module of another type is accepted only when its traced ``forward`` is an elementwise affine
  map (:mod:`bastion.certify._ibp_affine`), e.g. a normalisation layer written by hand.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import parametrize

from bastion.certify._ibp_affine import AffineGraph, trace_affine
from bastion.certify.normalize import Normalize
from bastion.errors import CertificationError

__all__ = ["KINDS", "Step", "check_global_hooks", "check_object", "steps", "supported_layers"]

_MONOTONE: tuple[type, ...] = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh)
_MONOTONE += (nn.MaxPool1d, nn.MaxPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
KINDS: dict[type, str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv",
    nn.Conv2d: "conv",
    nn.BatchNorm1d: "batchnorm",
    nn.BatchNorm2d: "batchnorm",
    nn.AvgPool1d: "positive",  # a non-negative linear map: radius through the layer itself
    nn.AvgPool2d: "positive",
    nn.AdaptiveAvgPool1d: "positive",
    nn.AdaptiveAvgPool2d: "positive",
    nn.Flatten: "reshape",
    nn.Unflatten: "reshape",
    nn.Identity: "reshape",
    nn.Dropout: "dropout",
    Normalize: "normalize",
    nn.Softplus: "softplus",
    # Non-decreasing in every input: the box's corners map to the corners.
    **dict.fromkeys(_MONOTONE, "monotone"),
}
# Class attributes a subclass may define without changing what the layer computes.
_INERT = {"__init__", "__module__", "__qualname__", "__doc__", "__annotations__", "__dict__", "__weakref__"}
_INERT |= {"__firstlineno__", "__static_attributes__", "__orig_bases__", "__parameters__", "__annotate__"}
_INERT |= {"__annotate_func__", "__annotations_cache__"}
_CALL = ("__call__", "_call_impl", "_wrapped_call_impl")


def supported_layers() -> list[str]:
    """Names of the layer types IBP can bound (a user module whose forward is elementwise affine too)."""
    return sorted(k.__name__ for k in KINDS)


@dataclass(frozen=True)
class Step:
    """One layer on IBP's path: its dotted name, the module, how to bound it and the class whose
    forward it runs (``base``); ``graph`` for a recognised user-written affine layer."""

    name: str
    layer: nn.Module | None
    kind: str
    base: type
    graph: AffineGraph | None = None
    stats: tuple[Any, Any] = (None, None)  # (mean, std) of a classifier's own normalisation

    @property
    def where(self) -> str:
        kind = self.base if self.layer is None else type(self.layer)
        return f"layer {self.name!r} ({kind.__name__})"


def _base(cls: type, bases: tuple[type, ...]) -> tuple[type | None, list[str]]:
    """The first of ``bases`` in ``cls``'s MRO, and the attributes the classes before it define."""
    mro = cls.__mro__
    for i, k in enumerate(mro):
        if k in bases:
            extra = sorted({a for c in mro[:i] for a in vars(c)} - _INERT)
            if mro[i:] != k.__mro__:  # a mixin placed after the base would change its methods too
                extra.append("its base classes")
            return k, extra
    return None, []


def check_object(obj: Any, where: str, bases: tuple[type, ...]) -> type | None:
    """Refuse ``obj`` if its class overrides what ``bases`` define or the instance shadows a method;
    returns the base class it behaves as (None when it derives from none of them)."""
    base, extra = _base(type(obj), bases)
    if base is not None and extra:
        raise CertificationError(
            f"IBP cannot bound {where}: the subclass of {base.__name__} defines {', '.join(extra)}, so its "
            f"forward may differ from {base.__name__}'s; use {base.__name__} itself"
        )
    for key, value in vars(obj).items():
        attr = inspect.getattr_static(type(obj), key, None)
        method = inspect.isfunction(attr) or isinstance(attr, (staticmethod, classmethod))
        # No torch layer keeps a function in its instance dict; a user's traced module may (its
        # forward's use of it is traced), but nn.Module's call runs a _compiled_call_impl instead.
        stored = callable(value) and not isinstance(value, (nn.Module, torch.Tensor, type))
        if key in ("forward", "_compiled_call_impl") or method or (stored and base is not None):
            raise CertificationError(
                f"IBP cannot bound {where}: its {key!r} is replaced on the instance (monkey-patched); "
                f"delete the attribute (del module.{key})"
            )
    return base


def _check_torch(base: type, where: str) -> None:
    # The methods the class's forward runs (Sequential.forward iterates the container).
    methods = ["forward", *(n for n in ("_conv_forward", "__iter__") if n in vars(base))]
    for owner, name in [*((base, n) for n in methods), *((nn.Module, n) for n in _CALL)]:
        fn = inspect.getattr_static(owner, name, None)
        if getattr(fn, "__module__", "").split(".")[0] not in ("torch", "bastion"):
            raise CertificationError(
                f"IBP cannot bound {where}: {owner.__name__}.{name} has been replaced (monkey-patched) by "
                f"{getattr(fn, '__module__', '?')}; restore torch's own before certifying"
            )


def _check_hooks(module: nn.Module, where: str) -> None:
    hooks = (
        ("_forward_pre_hooks", "forward pre-hook, which may change its input (the old weight_norm, "
         "spectral_norm and prune register one)"),
        ("_forward_hooks", "forward hook, which may change its output"),
    )  # fmt: skip
    for attr, kind in hooks:
        if getattr(module, attr, None):
            raise CertificationError(
                f"IBP cannot bound {where}: it has a {kind}; remove it (handle.remove()) before certifying"
            )
    if parametrize.is_parametrized(module):
        raise CertificationError(
            f"IBP cannot bound {where}: it is parametrized (torch.nn.utils.parametrize); bake the weights in "
            "first with parametrize.remove_parametrizations(module, name, leave_parametrized=True)"
        )


def check_global_hooks() -> None:
    """Refuse while a global forward (pre-)hook would run on every module's forward."""
    hooks = getattr(torch_module, "_global_forward_hooks", {})
    if hooks or getattr(torch_module, "_global_forward_pre_hooks", {}):
        raise CertificationError(
            "IBP cannot bound any network while a global forward hook is registered "
            "(torch.nn.modules.module.register_module_forward_hook / _pre_hook); remove it (handle.remove())"
        )


def steps(module: nn.Module, prefix: str = "") -> list[Step]:
    """The layers of ``module`` in the order its forward runs them; refuses what IBP cannot follow."""
    where = f"layer {prefix!r} ({type(module).__name__})" if prefix else type(module).__name__
    if not isinstance(module, nn.Module):
        raise CertificationError(f"IBP cannot bound {where}: it is not an nn.Module")
    _check_hooks(module, where)
    base = check_object(module, where, (nn.Sequential, *KINDS))
    if base is nn.Sequential:
        _check_torch(base, where)
        out: list[Step] = []
        # Sequential.forward runs _modules.values(), repeats included (named_children skips repeats).
        for name, child in module._modules.items():
            out += steps(child, f"{prefix}.{name}" if prefix else name)  # type: ignore[arg-type]
        return out
    if base is None and type(module).__module__.split(".")[0] == "torch":
        known = ", ".join(supported_layers())
        raise CertificationError(f"IBP cannot bound {where}; IBP bounds only: {known}")
    if base is None:  # a user's own module: followed only if its traced forward is elementwise affine
        _check_torch(nn.Module, where)
        return [Step(prefix, module, "affine", type(module), trace_affine(module, where))]
    _check_torch(base, where)
    _check_options(module, where)
    return [Step(prefix, module, KINDS[base], base)]


def _check_options(layer: nn.Module, where: str) -> None:
    """Settings under which a supported layer stops being what IBP assumes (monotone, one tensor out)."""
    if isinstance(layer, nn.LeakyReLU) and not layer.negative_slope >= 0:
        raise CertificationError(f"IBP cannot bound {where}: a negative slope is not monotone")
    if isinstance(layer, nn.ELU) and not layer.alpha >= 0:
        raise CertificationError(f"IBP cannot bound {where}: a negative alpha is not monotone")
    divisor = getattr(layer, "divisor_override", None)
    if divisor is not None and not divisor > 0:
        raise CertificationError(f"IBP cannot bound {where}: a divisor_override of {divisor} is not positive")
    if getattr(layer, "return_indices", False):
        raise CertificationError(f"IBP cannot bound {where}: it returns indices too (return_indices=True)")
