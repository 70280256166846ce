"""Input transformation defenses, each with a BPDA surrogate, and a parser for their names.

>>> parse_defense("jpeg:75,bits:4")
[JPEG(quality=75), BitDepth(bits=4)]
"""

from __future__ import annotations

from collections.abc import Callable

from bastion.defenses.transforms.base import DefenseError, Transform
from bastion.defenses.transforms.bit_depth import BitDepth
from bastion.defenses.transforms.jpeg import JPEG
from bastion.defenses.transforms.median import MedianSmoothing
from bastion.defenses.transforms.resize_pad import RandomResizePad

__all__ = [
    "JPEG",
    "BitDepth",
    "DefenseError",
    "MedianSmoothing",
    "RandomResizePad",
    "Transform",
    "available_transforms",
    "parse_defense",
]

# name -> (what the optional argument is, how to build the transform from it, description)
_REGISTRY: dict[str, tuple[str, Callable[[str | None], Transform], str]] = {
    "jpeg": (
        "QUALITY",
        lambda a: JPEG() if a is None else JPEG(quality=_number(a, int, "jpeg", "QUALITY")),
        "JPEG compression at QUALITY 1-100 (default 75)",
    ),
    "bits": (
        "BITS",
        lambda a: BitDepth() if a is None else BitDepth(bits=_number(a, int, "bits", "BITS")),
        "bit-depth reduction to BITS bits (default 4)",
    ),
    "median": (
        "SIZE",
        lambda a: MedianSmoothing() if a is None else MedianSmoothing(size=_number(a, int, "median", "SIZE")),
        "SIZE x SIZE median smoothing (default 2)",
    ),
    "resize-pad": (
        "RATIO",
        lambda a: RandomResizePad()
        if a is None
        else RandomResizePad(max_size_ratio=_number(a, float, "resize-pad", "RATIO")),
        "random resize and pad into a canvas RATIO times larger (default 1.25; randomised)",
    ),
}


def _number(text: str, kind: type[int] | type[float], name: str, what: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise DefenseError(f"{name} takes {noun} {what}, got {text!r} (e.g. {name}:{_example(name)})") from None


def _example(name: str) -> str:
    return {"jpeg": "75", "bits": "4", "median": "2", "resize-pad": "1.25"}[name]


def available_transforms() -> dict[str, str]:
    """Registered transform names, sorted, with the ``name:ARG`` syntax and a description of each."""
    return {name: f"{name}[:{arg}] - {text}" for name, (arg, _, text) in sorted(_REGISTRY.items())}


def parse_defense(spec: str) -> list[Transform]:
    """Transforms from a comma-separated spec, applied in order: ``"jpeg:75,bits:4,median:2,resize-pad"``.

    Each item is ``name`` or ``name:ARG``; raises DefenseError listing the valid names on a bad item.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise DefenseError(f"empty defense spec {spec!r}; {_valid()}")
    out: list[Transform] = []
    for item in spec.split(","):
        name, _, arg = item.strip().partition(":")
        key = name.strip().lower()
        if key not in _REGISTRY:
            raise DefenseError(f"unknown transform {name.strip()!r} in {spec!r}; {_valid()}")
        out.append(_REGISTRY[key][1](arg.strip() if arg.strip() else None))
    return out


def _valid() -> str:
    return "valid transforms: " + ", ".join(f"{n}[:{arg}]" for n, (arg, _, _) in sorted(_REGISTRY.items()))
