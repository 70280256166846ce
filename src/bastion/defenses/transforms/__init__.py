"""Input transformation defenses, each with a BPDA surrogate, and a parser for their names.

>>> parse_defense("jpeg:75,bits:4")
[JPEG(quality=75), BitDepth(bits=4)]
"""

from __future__ import annotations

from bastion.defenses.transforms.base import DefenseError, Transform
from bastion.defenses.transforms.bit_depth import BitDepth
from bastion.defenses.transforms.jpeg import JPEG
from bastion.defenses.transforms.median import MedianSmoothing
from bastion.defenses.transforms.resize_pad import RandomResizePad

__all__ = [
    "BitDepth",
    "DefenseError",
    "JPEG",
    "MedianSmoothing",
    "RandomResizePad",
    "Transform",
    "available_transforms",
    "parse_defense",
]

# name -> (class, its hyperparameter, the parser of the optional argument, ARG, example, description)
_REGISTRY: dict[str, tuple[type[Transform], str, type, str, str, str]] = {
    "jpeg": (JPEG, "quality", int, "QUALITY", "75", "JPEG compression at QUALITY 1-100 (default 75)"),
    "bits": (BitDepth, "bits", int, "BITS", "4", "bit-depth reduction to BITS bits (default 4)"),
    "median": (MedianSmoothing, "size", int, "SIZE", "2", "SIZE x SIZE median smoothing (default 2)"),
    "resize-pad": (
        RandomResizePad,
        "max_size_ratio",
        float,
        "RATIO",
        "1.25",
        "random resize and pad into a canvas RATIO times larger (default 1.25; randomised)",
    ),
}


def _build(name: str, arg: str | None) -> Transform:
    cls, field, kind, what, example, _ = _REGISTRY[name]
    if arg is None:
        return cls()
    try:
        value = kind(arg)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise DefenseError(f"{name} takes {noun} {what}, got {arg!r} (e.g. {name}:{example})") from None
    return cls(**{field: value})


def available_transforms() -> dict[str, str]:
    """Registered transform names, sorted, with the ``name:ARG`` syntax and a description of each."""
    return {name: f"{name}[:{entry[3]}] - {entry[5]}" for name, entry in sorted(_REGISTRY.items())}


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
        out.append(_build(key, arg.strip() or None))
    return out


def _valid() -> str:
    return "valid transforms: " + ", ".join(f"{n}[:{entry[3]}]" for n, entry in sorted(_REGISTRY.items()))
