"""User-written elementwise affine layers (a ``Normalize`` of your own): recognised from their graph.

A module IBP does not know is never taken on trust. Its ``forward`` is traced with ``torch.fx`` and
accepted only when the traced graph is a chain of elementwise operations with constants on the
input (``x + c``, ``x - c``, ``c - x``, ``x * c``, ``x / c``, ``-x``), where the constants may be
reshaped or converted to the input's dtype and device. Such a map sends the box (centre m, radius r)
to exactly (m ∘ c, r·|c|), so IBP bounds it without loss. Anything else in the graph (a branch on
the input, a non-linear function, indexing the input, an in-place update) is refused, as is a
forward that traces to different constants twice in a row (randomness or hidden state). The
certifier's runtime self-check still compares the bounds with the real network's outputs.
"""

from __future__ import annotations

import copy
import operator
from typing import Any

import torch
from torch import nn

from bastion.errors import CertificationError

__all__ = ["AffineGraph", "trace_affine"]

Box = tuple[torch.Tensor, torch.Tensor]

_ADD = {operator.add, torch.add, "add"}
_SUB = {operator.sub, torch.sub, "sub"}
_MUL = {operator.mul, torch.mul, "mul"}
_DIV = {operator.truediv, torch.div, torch.true_divide, "div", "true_divide"}
_NEG = {operator.neg, torch.neg, "neg"}
_AFFINE = _ADD | _SUB | _MUL | _DIV | _NEG
# Pure, deterministic operations allowed on the constants (never on the input).
_CONST_METHODS = {"view", "reshape", "unsqueeze", "squeeze", "flatten", "contiguous", "float", "double"}
_CONST_METHODS |= {"to", "type_as", "detach", "clone", "expand", "reciprocal", "sqrt", "rsqrt", "abs"}
_CONST_METHODS |= {"add", "sub", "mul", "div", "neg"}
_CONST_FUNCS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.getitem}
_CONST_FUNCS |= {torch.sqrt, torch.rsqrt, torch.reciprocal, torch.abs}
_META = {"device", "dtype"}


class AffineGraph:
    """A traced forward classified node by node: ``kinds[name]`` is "box", "const" or "meta"."""

    def __init__(self, graph_module: Any, kinds: dict[str, str]) -> None:
        self.graph_module = graph_module
        self.kinds = kinds

    def through(self, box: Box) -> Box:
        """The exact image of the box (centre, radius) under the traced affine map."""
        from torch.fx.node import map_arg

        env: dict[str, Any] = {}
        result: Box | None = None
        for node in self.graph_module.graph.nodes:
            kind = self.kinds[node.name]
            if node.op == "placeholder":
                env[node.name] = box
            elif node.op == "output":
                result = env[node.args[0].name]
            elif node.op == "get_attr":
                env[node.name] = operator.attrgetter(node.target)(self.graph_module)
            elif kind == "meta":
                env[node.name] = getattr(_centre(env[node.args[0].name]), node.args[1])
            elif kind == "const":
                # A box handed to a constant's .to()/.type_as() stands for its centre (dtype, device).
                args = map_arg(node.args, lambda n: _centre(env[n.name]))
                kwargs = map_arg(node.kwargs, lambda n: _centre(env[n.name]))
                env[node.name] = _call(node, args, kwargs)
            else:
                env[node.name] = _affine(node, [env[a.name] if _is_node(a) else a for a in node.args])
        if result is None:  # unreachable for a graph trace_affine accepted
            raise CertificationError("internal error: the traced graph has no output")
        return result


def _is_node(value: Any) -> bool:
    from torch.fx import Node

    return isinstance(value, Node)


def _centre(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value


def _call(node: Any, args: Any, kwargs: Any) -> Any:
    if node.op == "call_method":
        return getattr(args[0], node.target)(*args[1:], **kwargs)
    return node.target(*args, **kwargs)


def _constant(value: Any, doing: str) -> torch.Tensor | float:
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise CertificationError(f"IBP cannot bound {doing} a {type(value).__name__}")
    if isinstance(value, torch.Tensor) and not (value.is_floating_point() and bool(value.isfinite().all())):
        raise CertificationError(f"IBP cannot bound {doing} a non-finite or non-float constant")
    return value


def _affine(node: Any, args: list[Any]) -> Box:
    target = node.target
    if target in _NEG:
        mid, rad = args[0]
        return -mid, rad
    box_first = isinstance(args[0], tuple)
    (mid, rad), other = (args[0], args[1]) if box_first else (args[1], args[0])
    c = _constant(other, f"{target!r} with")
    if target in _MUL or target in _DIV:
        if target in _DIV and ((c == 0).any() if isinstance(c, torch.Tensor) else c == 0):
            raise CertificationError("IBP cannot bound a division by zero in a normalisation layer")
        scale = c.abs() if isinstance(c, torch.Tensor) else abs(c)
        return (mid * c, rad * scale) if target in _MUL else (mid / c, rad / scale)
    out = mid + c if target in _ADD else (mid - c if box_first else c - mid)
    return out, torch.broadcast_to(rad, out.shape)


def _classify(gm: Any, where: str) -> dict[str, str]:
    kinds: dict[str, str] = {}
    placeholders = 0
    for node in gm.graph.nodes:
        inputs = [a for a in node.all_input_nodes]
        boxed = [a for a in inputs if kinds[a.name] == "box"]
        refuse = f"IBP cannot bound {where}: its forward "
        if node.op == "placeholder":
            placeholders += 1
            if placeholders > 1:
                raise CertificationError(refuse + "takes more than one input")
            kinds[node.name] = "box"
        elif node.op == "get_attr":
            kinds[node.name] = "const"
        elif node.op == "output":
            if not _is_node(node.args[0]) or kinds[node.args[0].name] != "box":
                raise CertificationError(refuse + "does not return one tensor computed from its input")
            kinds[node.name] = "box"
        elif node.op == "call_function" and node.target is getattr:
            if node.args[1] not in _META:
                raise CertificationError(refuse + f"reads .{node.args[1]} of a tensor")
            kinds[node.name] = "meta"
        elif not boxed:
            allowed = _CONST_METHODS if node.op == "call_method" else _CONST_FUNCS
            if node.op not in ("call_method", "call_function") or node.target not in allowed:
                raise CertificationError(refuse + f"computes {node.target!r} on its constants")
            kinds[node.name] = "const"
        elif node.op == "call_method" and node.target in ("to", "type_as") and kinds[inputs[0].name] != "box":
            kinds[node.name] = "const"  # a constant moved to the input's dtype/device
        elif node.op in ("call_method", "call_function") and node.target in _AFFINE and not node.kwargs:
            operands = [a for a in node.args if _is_box(a, kinds)]
            divides_by_input = node.target in _DIV and not _is_box(node.args[0], kinds)
            if len(operands) != 1 or len(node.args) != (1 if node.target in _NEG else 2) or divides_by_input:
                raise CertificationError(refuse + f"applies {node.target!r} in a way that is not affine")
            kinds[node.name] = "box"
        else:
            name = getattr(node.target, "__name__", node.target)
            raise CertificationError(
                refuse + f"applies {name!r} to its input; only x + c, x - c, x * c, x / c with constants "
                "are followed (or use bastion.certify.Normalize)"
            )
    return kinds


def _is_box(value: Any, kinds: dict[str, str]) -> bool:
    return _is_node(value) and kinds[value.name] == "box"


def _fingerprint(gm: Any) -> list[Any]:
    out: list[Any] = [gm.code]
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            out.append(operator.attrgetter(node.target)(gm))
    return out


def _same(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    for u, v in zip(a, b, strict=True):
        if isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor):
            if u.shape != v.shape or not torch.equal(u, v):
                return False
        elif isinstance(u, torch.Tensor) or isinstance(v, torch.Tensor) or u != v:
            return False
    return True


def trace_affine(module: nn.Module, where: str) -> AffineGraph:
    """The module's forward as an :class:`AffineGraph`, or a :class:`CertificationError` saying why not."""
    import torch.fx

    hint = "use bastion.certify.Normalize, or write the network as nn.Sequential of supported layers"
    if any(True for _ in module.children()):
        raise CertificationError(f"IBP cannot bound {where}, a container with its own forward; {hint}")
    traces = []
    for _ in range(2):
        try:
            # A shallow copy: tracing stores the constants it meets as attributes of the module traced,
            # and the caller's module is never mutated.
            traces.append(torch.fx.symbolic_trace(copy.copy(module)))
        except Exception as exc:  # any failure to trace means IBP cannot follow the forward
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CertificationError(
                f"IBP cannot bound {where}: its forward cannot be traced ({reason}); {hint}"
            ) from None
    if not _same(_fingerprint(traces[0]), _fingerprint(traces[1])):
        raise CertificationError(
            f"IBP cannot bound {where}: its forward traced to different operations or constants twice "
            f"in a row (randomness or hidden state); {hint}"
        )
    return AffineGraph(traces[0], _classify(traces[0], where))
