"""Parsing both schema JSON formats (see :mod:`bastion.tabular.schema`) into a TabularSchema."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion.data.tabular import label_order
from bastion.errors import DataError
from bastion.tabular.schema import FORMAT, KINDS, Feature, Relation, TabularSchema


def parse_schema(doc: Mapping[str, Any], dataset: str | Path | None) -> TabularSchema:
    if doc.get("format") == FORMAT:
        return _parse_own(doc)
    return _parse_shared(doc, dataset)


def _parse_own(doc: Mapping[str, Any]) -> TabularSchema:
    if doc.get("version", 1) != 1:
        raise DataError(f"schema version {doc.get('version')!r} unsupported; this bastion reads version 1")
    known = set(Feature.__dataclass_fields__)
    feats = []
    for f in doc.get("features", []):
        extra = set(f) - known
        if extra:
            raise DataError(f"feature {f.get('name')!r}: unknown key(s) {', '.join(sorted(extra))}")
        feats.append(Feature(**{**f, "categories": tuple(f.get("categories", ()))}))
    rels = [Relation(**r) for r in doc.get("relations", [])]
    return TabularSchema(
        features=tuple(feats),
        label=str(doc.get("label", "label")),
        classes=tuple(doc.get("classes", ())),
        class_names=tuple(doc.get("class_names", ())),
        relations=tuple(rels),
        name=str(doc.get("name", "")),
    )


def _pick_entry(doc: Mapping[str, Any], dataset: str | Path | None) -> tuple[str, Mapping[str, Any]]:
    entries = {k: v for k, v in doc.items() if isinstance(v, dict) and "features" in v}
    if not entries:
        raise DataError(
            "no dataset entries with 'features'; expected bastion's format or tabular_schema.json"
        )
    listing = ", ".join(entries)
    if dataset is None:
        if len(entries) == 1:
            return next(iter(entries.items()))
        raise DataError(f"the schema file describes several datasets; pass dataset= one of: {listing}")
    want = Path(str(dataset)).name
    for key, entry in entries.items():
        for part in key.split("|"):
            if want in (part, part.split(".")[0]):
                return key, entry
    raise DataError(f"no entry for dataset {want!r} in the schema file; entries: {listing}")


def _codes(f: Mapping[str, Any]) -> list[str]:
    values = f.get("values")
    if isinstance(values, dict):
        return [str(k) for k in values]
    if isinstance(values, list):
        return [str(v) for v in values]
    return [str(v) for v in f.get("observed_values", [])]


def _parse_shared(doc: Mapping[str, Any], dataset: str | Path | None) -> TabularSchema:
    key, entry = _pick_entry(doc, dataset)
    feats = []
    for f in entry["features"]:
        name, kind = str(f.get("name", "")), f.get("type")
        if kind not in KINDS:
            raise DataError(f"feature {name!r}: type {kind!r} unknown; expected one of {', '.join(KINDS)}")
        rng = f.get("observed_range") or f.get("range")
        low, high = (float(rng[0]), float(rng[1])) if rng else (None, None)
        codes: list[str] = []
        if kind == "categorical":
            codes = _codes(f)
        elif kind == "ordinal":
            codes = _codes(f)
            if not codes and rng:
                codes = [str(v) for v in range(int(rng[0]), int(rng[1]) + 1)]
            try:  # an ordinal's order is numeric ("-2" < "10"), not textual
                codes = sorted(codes, key=float)
            except ValueError:
                raise DataError(
                    f"ordinal feature {name!r} has non-numeric codes; list them in order"
                ) from None
        feats.append(
            Feature(
                name=name,
                kind=kind,
                categories=tuple(codes),
                low=None if codes else low,
                high=None if codes else high,
                immutable=bool(f.get("immutable_hint", False)),
            )
        )
    label = entry.get("label", {})
    values = label.get("values", {}) if isinstance(label, dict) else {}
    classes = label_order(set(values)) if values else []  # numeric codes by value, others as text
    return TabularSchema(
        features=tuple(feats),
        label=str(label.get("name", "label")) if isinstance(label, dict) else "label",
        classes=tuple(classes),
        class_names=tuple(str(values[c]) for c in classes),
        name=key.split("|")[0].split(".")[0],
    )
