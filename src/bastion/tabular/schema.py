"""The feature schema of a tabular dataset: feature kinds, codes, ranges, mutability, linear relations.

Two JSON formats are read by :meth:`TabularSchema.from_json`:

* **bastion's own** (written by :meth:`TabularSchema.to_json`), recognised by ``"format"``::

    {"format": "bastion.tabular_schema", "version": 1, "name": "credit",
     "label": "label", "classes": ["0", "1"], "class_names": ["good", "bad"],
     "features": [
       {"name": "age", "kind": "integer", "low": 19, "high": 75, "immutable": true},
       {"name": "amount", "kind": "numeric", "low": 0, "high": 20000, "max_change": 1000, "cost": 2.0},
       {"name": "housing", "kind": "categorical", "categories": ["A151", "A152", "A153"]},
       {"name": "rate", "kind": "ordinal", "categories": ["1", "2", "3", "4"], "direction": "decrease"}],
     "relations": [{"coefficients": {"a": 1, "b": 1, "total": -1}, "op": "==", "rhs": 0, "adjust": "total"}]}

  ``kind`` is numeric, integer, ordinal or categorical. Ordinal and categorical features list their
  ``categories`` (codes as they appear in the CSV; an ordinal's in increasing order). ``low``/``high``
  bound numeric and integer features (``null``: unbounded). ``max_change`` limits a feature's change
  in its own units (ordinal: levels); ``cost`` weighs it in a threat's total budget; ``direction``
  ("any", "increase", "decrease") restricts which way it may move.
* **the shared data folder's** ``tabular_schema.json``: one entry per data file (keys are file names,
  several joined by ``|``); ``dataset`` picks the entry by file name. ``type`` becomes ``kind``,
  ``values``/``observed_values`` the categories (ordinal codes sorted numerically, or
  ``observed_range`` when no codes are listed), ``observed_range`` the range and ``immutable_hint``
  becomes ``immutable``. Adult's missing value ``?`` is listed there as a category of its own, and
  stays one (policy: "missing" is a value a person can submit, not a hole to impute).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from bastion.errors import DataError

__all__ = ["Feature", "Relation", "TabularSchema"]

Kind = Literal["numeric", "integer", "ordinal", "categorical"]
KINDS = ("numeric", "integer", "ordinal", "categorical")
DIRECTIONS = ("any", "increase", "decrease")
FORMAT = "bastion.tabular_schema"


@dataclass(frozen=True)
class Feature:
    """One column. Categorical and ordinal values are held as indices into ``categories``."""

    name: str
    kind: Kind
    categories: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    immutable: bool = False
    max_change: float | None = None
    cost: float = 1.0
    direction: Literal["any", "increase", "decrease"] = "any"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DataError(f"feature name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise DataError(
                f"feature {self.name!r}: kind {self.kind!r} unknown; use one of {', '.join(KINDS)}"
            )
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        if self.discrete_codes:
            if not self.categories:
                raise DataError(f"feature {self.name!r} ({self.kind}) needs its list of categories")
            if len(set(self.categories)) != len(self.categories):
                raise DataError(f"feature {self.name!r} lists a category twice: {self.categories}")
            # the range of a coded feature is its index range
            object.__setattr__(self, "low", 0.0)
            object.__setattr__(self, "high", float(len(self.categories) - 1))
        elif self.categories:
            raise DataError(f"feature {self.name!r} ({self.kind}) cannot have categories; make it ordinal")
        for bound in ("low", "high"):
            v = getattr(self, bound)
            if v is not None and not math.isfinite(float(v)):
                raise DataError(f"feature {self.name!r}: {bound} must be finite or None, got {v!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise DataError(f"feature {self.name!r}: low {self.low} > high {self.high}")
        if self.max_change is not None and not (
            float(self.max_change) >= 0 and math.isfinite(self.max_change)
        ):
            raise DataError(
                f"feature {self.name!r}: max_change must be >= 0 or None, got {self.max_change!r}"
            )
        if not (math.isfinite(self.cost) and self.cost > 0):
            raise DataError(f"feature {self.name!r}: cost must be > 0, got {self.cost!r}")
        if self.direction not in DIRECTIONS:
            raise DataError(f"feature {self.name!r}: direction must be one of {', '.join(DIRECTIONS)}")
        if self.kind == "categorical" and self.direction != "any":
            raise DataError(f"feature {self.name!r}: a categorical feature has no direction; use ordinal")

    @property
    def discrete_codes(self) -> bool:
        """True for ordinal and categorical features (values are category indices)."""
        return self.kind in ("ordinal", "categorical")

    @property
    def integral(self) -> bool:
        """Values must be whole numbers (integer features and category indices)."""
        return self.kind != "numeric"


@dataclass(frozen=True)
class Relation:
    """A linear relation ``sum(coefficients[f] * x[f]) op rhs`` between numeric/integer/ordinal features.

    ``adjust`` names the feature that :func:`bastion.tabular.repair` moves to restore the relation
    (default: the last mutable feature in ``coefficients``).
    """

    coefficients: Mapping[str, float]
    op: Literal["==", "<="] = "=="
    rhs: float = 0.0
    adjust: str | None = None

    def __post_init__(self) -> None:
        coef = {str(k): float(v) for k, v in dict(self.coefficients).items() if float(v) != 0.0}
        if not coef:
            raise DataError("a relation needs at least one non-zero coefficient")
        object.__setattr__(self, "coefficients", MappingProxyType(coef))
        if self.op not in ("==", "<="):
            raise DataError(f"relation op must be '==' or '<=', got {self.op!r}")
        if self.adjust is not None and self.adjust not in coef:
            raise DataError(f"relation adjusts {self.adjust!r}, which has no coefficient in it")

    def __str__(self) -> str:
        lhs = " + ".join(f"{v:g}*{k}" for k, v in self.coefficients.items())
        return f"{lhs} {self.op} {self.rhs:g}"


@dataclass(frozen=True)
class TabularSchema:
    """Features (in column order), the label column and its classes, and linear relations."""

    features: tuple[Feature, ...]
    label: str = "label"
    classes: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    relations: tuple[Relation, ...] = ()
    name: str = ""
    _index: Mapping[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(self.features))
        object.__setattr__(self, "relations", tuple(self.relations))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if not self.features:
            raise DataError("a tabular schema needs at least one feature")
        names = [f.name for f in self.features]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise DataError(f"schema lists feature(s) twice: {', '.join(dup)}")
        if self.label in names:
            raise DataError(f"the label column {self.label!r} is also listed as a feature; drop one")
        if self.class_names and len(self.class_names) != len(self.classes):
            raise DataError("class_names must have one entry per class in classes")
        object.__setattr__(self, "_index", MappingProxyType({n: i for i, n in enumerate(names)}))
        for rel in self.relations:
            for n in rel.coefficients:
                if n not in self._index:
                    raise DataError(
                        f"relation {rel} names unknown feature {n!r}; features: {', '.join(names)}"
                    )
                if self.feature(n).kind == "categorical":
                    raise DataError(f"relation {rel} uses categorical feature {n!r}; relations are linear")

    # -- look-ups ------------------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def __len__(self) -> int:
        return len(self.features)

    def index(self, name: str) -> int:
        """Column index of feature ``name``; DataError listing the features when unknown."""
        if name not in self._index:
            raise DataError(f"unknown feature {name!r}; features: {', '.join(self.names)}")
        return self._index[name]

    def feature(self, name: str) -> Feature:
        return self.features[self.index(name)]

    def validate_columns(self, header: Iterable[str], *, ignore: Iterable[str] = ()) -> None:
        """Raise DataError unless ``header`` holds exactly the features and the label (``ignore``d aside)."""
        cols = [h.strip() for h in header]
        skip = set(ignore)
        twice = sorted({c for c in cols if cols.count(c) > 1})
        if twice:
            raise DataError(f"the data names column(s) {', '.join(twice)} twice; rename or drop the copies")
        unknown = [c for c in cols if c not in self._index and c != self.label and c not in skip]
        missing = [n for n in (*self.names, self.label) if n not in cols]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown column(s) {', '.join(unknown)}")
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            raise DataError(
                f"the data does not match the schema{' ' + repr(self.name) if self.name else ''}: "
                f"{'; '.join(parts)}; fix the schema's feature names or pass ignore=[...] for extra columns"
            )

    # -- derived schemas -----------------------------------------------------------------------------
    def without(self, *names: str) -> TabularSchema:
        """This schema minus features ``names`` (e.g. a row id); relations using them are dropped."""
        for n in names:
            self.index(n)
        keep = tuple(f for f in self.features if f.name not in names)
        rels = tuple(r for r in self.relations if not set(r.coefficients) & set(names))
        return replace(self, features=keep, relations=rels)

    def updated(self, name: str, **changes: Any) -> TabularSchema:
        """This schema with feature ``name`` changed, e.g. ``updated("age", immutable=False)``."""
        i = self.index(name)
        feats = list(self.features)
        feats[i] = replace(feats[i], **changes)
        return replace(self, features=tuple(feats))

    # -- JSON ----------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        feats = []
        for f in self.features:
            d = asdict(f)
            d["categories"] = list(f.categories)
            if f.discrete_codes:
                d.pop("low"), d.pop("high")
            else:
                d.pop("categories")
            feats.append(d)
        return {
            "format": FORMAT,
            "version": 1,
            "name": self.name,
            "label": self.label,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "features": feats,
            "relations": [
                {"coefficients": dict(r.coefficients), "op": r.op, "rhs": r.rhs, "adjust": r.adjust}
                for r in self.relations
            ],
        }

    def to_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return p

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], dataset: str | Path | None = None) -> TabularSchema:
        from bastion.tabular._schema_json import parse_schema

        return parse_schema(doc, dataset)

    @classmethod
    def from_json(cls, path: str | Path, dataset: str | Path | None = None) -> TabularSchema:
        """Read bastion's format or the shared ``tabular_schema.json`` (entry picked by ``dataset``)."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"{p} does not exist; expected a tabular schema JSON file")
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{p}: not a UTF-8 JSON file ({exc}); expected a tabular schema") from None
        if not isinstance(doc, dict):
            raise DataError(f"{p}: the top level must be a JSON object")
        try:
            return cls.from_dict(doc, dataset)
        except DataError as exc:
            raise DataError(f"{p}: {exc}") from None
