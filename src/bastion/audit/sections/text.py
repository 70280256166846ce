"""The text section: every configured text attack at every preset, the sanitiser, and the edits shown.

For each attack (default DeepWordBug, invisible characters, homoglyphs, PWWS, TextFooler) and each preset
(``paper``: the papers' constraint thresholds; ``strict``: the tighter ones, because loose constraints make
success rates meaningless), on the audited texts: clean accuracy, accuracy under attack, success rate,
mean queries, words and characters changed, and the edits the verifier rejected. An attack whose offline
resource (WordNet, GloVe, the sentence encoder) is missing is listed as *not run* with the install command,
never dropped. The headline per preset is the union over the attacks that ran (a text counts as robust
only if no attack flipped it): rows ``text/paper`` and ``text/strict``, which the ``BA301`` gate reads.

The sanitiser (:class:`~bastion.text.SanitisedTextClassifier`: invisible characters stripped, confusables
mapped to their UTS #39 skeleton, NFKC; Boucher et al. 2022) is measured adaptively: the character-trick
attacks run again against the sanitised model, and clean accuracy is reported with and without it.

Findings: ``BA108`` when clean accuracy is at chance (as for images); ``BA601`` when a character-trick
attack flips more than 1% of the texts the model got right;
``BA603`` when a counted adversarial is not valid or not changed (a bug: the attacks verify themselves).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from bastion.audit.config import TEXT_ATTACK_NAMES, TEXT_PRESETS
from bastion.audit.findings import Finding, finding
from bastion.audit.sections.base import (
    AuditContext,
    CheckRun,
    HeadlineRow,
    MetricRow,
    Section,
    SectionResult,
    check,
)
from bastion.errors import BastionError, DataError

__all__ = [
    "CHARACTER_TRICKS",
    "TEXT_AUDIT_ATTACKS",
    "TextSection",
    "chance_checks",
    "chance_findings",
    "edit_segments",
    "text_lines",
]

log = logging.getLogger(__name__)

TEXT_AUDIT_ATTACKS = TEXT_ATTACK_NAMES
CHARACTER_TRICKS = ("invisible", "homoglyph")
"""The attacks the sanitiser undoes (BA601); DeepWordBug's visible typos are not among them."""
PRESETS = TEXT_PRESETS
TRICK_ALARM = 0.01
_EDIT = re.compile(r"(\[[^\[\]]*? -> [^\[\]]*?\])")


def edit_segments(shown: str) -> list[dict[str, Any]]:
    """``show_edit``'s line as ``[{"text", "edit"}]`` pieces: the ``[old -> new]`` parts are edits (for
    highlighting in the HTML; the template escapes every piece)."""
    return [{"text": p, "edit": bool(_EDIT.fullmatch(p))} for p in _EDIT.split(shown) if p]


class TextSection(Section):
    """``TextSection(attacks=None, presets=None, max_queries=None)``: hyperparameters here (None: the
    config's ``text_attacks``, ``text_presets``, ``text_max_queries``), model and texts from the context.

    ``engine`` runs every attack through the shard runner (:func:`bastion.engine.attack_text_sharded`:
    shards of ``shard_size`` texts, one run per attack and preset under ``run_dir``); on an engine other
    than the local one the workers load the model from ``spec`` (for the sanitiser's rows, the spec's model
    behind the default sanitiser, as ``bastion audit`` builds it; a model audited behind a custom sanitiser
    runs on the local engine). The rows equal the unsharded ones text for text."""

    name = "text"
    provides = ("adversarials",)
    template = "text.html.j2"

    def __init__(
        self,
        attacks: Sequence[str] | None = None,
        presets: Sequence[str] | None = None,
        *,
        max_queries: int | None = None,
        engine: Any = None,
        spec: str | None = None,
        run_dir: Any = None,
        shard_size: int = 50,
    ) -> None:
        if engine is not None and engine.name != "local" and spec is None:
            raise BastionError("text section: the engine loads the model on its workers; give its spec")
        unknown = [a for a in attacks or () if a not in TEXT_AUDIT_ATTACKS]
        unknown += [p for p in presets or () if p not in PRESETS]
        if unknown or attacks == () or presets == ():
            raise BastionError(
                f"text section: unknown or no attacks/presets {unknown}; attacks: "
                f"{', '.join(TEXT_AUDIT_ATTACKS)}; presets: {', '.join(PRESETS)}"
            )
        self.attacks: tuple[str, ...] | None = None if attacks is None else tuple(attacks)
        self.presets: tuple[str, ...] | None = None if presets is None else tuple(presets)
        self.max_queries = max_queries
        self.engine, self.spec, self.run_dir, self.shard_size = engine, spec, run_dir, shard_size

    def run(self, ctx: AuditContext) -> SectionResult:
        from bastion.text.sanitise import SanitisedTextClassifier

        attacks = self.attacks or ctx.config.text_attacks  # None: the config's
        presets = self.presets or ctx.config.text_presets
        model: Any = ctx.model  # a TextClassifier (the context types the image audit's models)
        texts: list[str] = list(ctx.x)
        correct = ctx.correct.cpu()
        already = isinstance(model, SanitisedTextClassifier)
        sanitised = model if already else SanitisedTextClassifier(model)
        rows: list[dict[str, Any]] = []
        results: dict[tuple[str, str], Any] = {}
        for preset in presets:
            for name in attacks:
                row, result = self._attack(ctx, model, name, preset, texts)
                rows.append(row)
                if result is not None:
                    results[(name, preset)] = result
        headline, adversarials = [], []
        for preset in presets:
            ran = [r for (n, p), r in results.items() if p == preset]
            fooled = torch.zeros(len(texts), dtype=torch.bool)
            for r in ran:
                fooled |= r.success
            robust = float((correct & ~fooled).float().mean())
            missing = [row["attack"] for row in rows if row["preset"] == preset and row["status"] != "ran"]
            note = f"attacks not run: {', '.join(missing)} (an upper bound)" if missing else ""
            label = f"text/{preset}"
            headline.append({"label": label, "clean_accuracy": float(correct.float().mean()),
                             "robust_accuracy": robust, "note": note})  # fmt: skip
            adversarials.append(HeadlineRow(label, robust))
        block: dict[str, Any] = {
            "attacks": rows,
            "presets": list(presets),
            "headline": headline,
            "sanitiser": self._sanitiser(ctx, sanitised, already, texts, results, presets, attacks),
            "examples": _examples(results, presets, attacks, ctx.config.examples),
        }
        findings, ran_checks = _findings(rows, block["sanitiser"], results)
        findings, ran_checks = [*chance_findings(ctx), *findings], [*chance_checks(ctx), *ran_checks]
        return SectionResult(block, tuple(findings), tuple(ran_checks), {"adversarials": adversarials})

    def _attack(
        self, ctx: AuditContext, model: Any, name: str, preset: str, texts: list[str]
    ) -> tuple[dict[str, Any], Any]:
        """One attack at one preset: its row, and its result (None when it could not run)."""
        from bastion.text.registry import make_text_attack

        row: dict[str, Any] = {"attack": name, "preset": preset, "status": "ran", "reason": None}
        try:
            attack, threat = make_text_attack(
                name, preset, max_queries=self.max_queries or ctx.config.text_max_queries
            )
        except (DataError, ImportError, OSError) as exc:  # a missing offline resource: say how to get it
            log.warning("text attack %s/%s not run: %s", name, preset, exc)
            return {**row, "status": "not run", "reason": str(exc)}, None
        task = f"text: {name} ({preset})"
        tell = lambda done, total: ctx.progress(task, done, total)  # noqa: E731
        if self.engine is None:
            result = attack(model, texts, ctx.y.cpu(), threat, seed=ctx.seed, progress=tell)
        else:
            result = self._sharded(ctx, model, name, preset, texts, tell)
        ctx.clock.attack_seconds += result.seconds
        ctx.clock.log.append({"attack": name, "purpose": "text", "threat": preset, "seconds": result.seconds})
        summary = result.summary()
        keep = ("n", "clean_accuracy", "robust_accuracy", "success_rate", "invalid", "mean_queries",
                "mean_words_changed", "mean_chars_changed", "seconds", "params",
                "threat_description")  # fmt: skip
        return {**row, **{k: summary[k] for k in keep}, "n_fooled": int(result.success.sum())}, result

    def _sharded(
        self, ctx: AuditContext, model: Any, name: str, preset: str, texts: list[str], tell: Any
    ) -> Any:
        """One attack's row through the shard runner; the sanitised model is the spec's sanitised form."""
        from pathlib import Path

        from bastion.engine import TextModelRef, attack_text_sharded
        from bastion.text.sanitise import SanitisedTextClassifier

        sanitised = isinstance(model, SanitisedTextClassifier)
        target = model
        if self.engine.name != "local":
            assert self.spec is not None  # checked at construction
            target = TextModelRef.create(self.spec, sanitise=sanitised)
        where = None
        if self.run_dir is not None:
            where = Path(self.run_dir) / f"{name}-{preset}{'-sanitised' if sanitised else ''}"
        budget = self.max_queries or ctx.config.text_max_queries
        return attack_text_sharded(
            name, preset, target, texts, ctx.y.cpu(), max_queries=budget, seed=ctx.seed,
            shard_size=self.shard_size, engine=self.engine, run_dir=where, progress=tell,
        )  # fmt: skip

    def _sanitiser(
        self,
        ctx: AuditContext,
        sanitised: Any,
        already: bool,
        texts: list[str],
        results: Mapping[Any, Any],
        presets: Sequence[str],
        attacks: Sequence[str],
    ) -> dict[str, Any]:
        """Clean accuracy with and without the sanitiser; the character tricks against it (adaptive)."""
        model: Any = ctx.model
        bare = model.model if already else model
        y = ctx.y.cpu()
        acc_bare = float((bare(texts).argmax(1) == y).float().mean())
        acc_san = float((sanitised(texts).argmax(1) == y).float().mean())
        out: dict[str, Any] = {
            "description": sanitised.sanitiser.describe(),
            "audited_model_sanitised": already,
            "clean_accuracy": acc_bare,
            "clean_accuracy_sanitised": acc_san,
            "rows": [],
        }
        for preset in presets:
            for name in (a for a in attacks if a in CHARACTER_TRICKS):
                bare_result = results.get((name, preset))
                if already:  # the audited model is the sanitised one: its own rows are the measurement
                    row, result = {"status": "ran" if bare_result else "not run"}, bare_result
                else:
                    row, result = self._attack(ctx, sanitised, name, preset, texts)
                out["rows"].append({
                    "attack": name,
                    "preset": preset,
                    "status": row["status"],
                    "reason": row.get("reason"),
                    "success_rate": None if already or bare_result is None else bare_result.success_rate,
                    "success_rate_sanitised": None if result is None else result.success_rate,
                    "robust_accuracy_sanitised": None if result is None else result.robust_accuracy,
                })  # fmt: skip
        return out

    def compare(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[MetricRow]:
        """Robust accuracy per preset (the union over attacks) and per attack, matched by label."""
        o, n = _metrics(old), _metrics(new)
        return [(k, o.get(k), n.get(k)) for k in dict.fromkeys([*o, *n])]


def chance_findings(ctx: AuditContext) -> list[Finding]:
    """``BA108`` when clean accuracy is no better than always answering the most frequent class (the
    image pre-check, on text and tabular models: a model loaded wrong or paired with other data)."""
    from bastion.audit.prechecks import check_clean_accuracy

    found = check_clean_accuracy(ctx.correct.cpu(), ctx.y.cpu())
    return [found] if found is not None else []


def chance_checks(ctx: AuditContext) -> list[CheckRun]:
    """The ``BA108`` check run (see :func:`chance_findings`)."""
    passed = not chance_findings(ctx)
    return [check("BA108", "model", passed, clean_accuracy=float(ctx.correct.float().mean()))]


def _metrics(report: Mapping[str, Any]) -> dict[str, float]:
    block = report.get("text") or {}
    out = {f"robust {h['label']}": h["robust_accuracy"] for h in block.get("headline", [])}
    for r in block.get("attacks", []):
        if r["status"] == "ran":
            out[f"robust text/{r['preset']} {r['attack']}"] = r["robust_accuracy"]
    return out


def _examples(results: Mapping[tuple[str, str], Any], presets: Sequence[str], attacks: Sequence[str],
              k: int) -> list[dict[str, Any]]:  # fmt: skip
    """Up to ``k`` successful edits, at most two per attack and preset (the first preset first)."""
    from bastion.text.attacks.result import show_edit

    out: list[dict[str, Any]] = []
    for preset in presets:
        for name in attacks:
            r = results.get((name, preset))
            if r is None:
                continue
            for i in r.success.nonzero().flatten().tolist()[:2]:
                if len(out) >= k:
                    return out
                shown = show_edit(r.originals[i], r.adversarials[i])
                out.append({
                    "attack": name, "preset": preset, "index": i, "label": int(r.labels[i]),
                    "prediction": int(r.predictions[i]), "original": r.originals[i],
                    "adversarial": r.adversarials[i], "shown": shown, "segments": edit_segments(shown),
                })  # fmt: skip
    return out


def _findings(
    rows: list[dict[str, Any]], sanitiser: Mapping[str, Any], results: Mapping[tuple[str, str], Any]
) -> tuple[list[Finding], list[CheckRun]]:
    findings: list[Finding] = []
    tricks = {f"{r['attack']}/{r['preset']}": r["success_rate"] for r in rows
              if r["attack"] in CHARACTER_TRICKS and r["status"] == "ran"}  # fmt: skip
    fired = {k: v for k, v in tricks.items() if v > TRICK_ALARM}
    if fired:
        worst = max(fired, key=lambda k: fired[k])
        behind = [s for s in sanitiser["rows"] if s["success_rate_sanitised"] is not None]
        after = max((s["success_rate_sanitised"] for s in behind), default=None)
        detail = f"{worst} flips {fired[worst]:.1%} of the texts the model got right" + (
            f" ({len(fired)} character-trick runs above {TRICK_ALARM:.0%})" if len(fired) > 1 else ""
        )
        if after is not None and not sanitiser["audited_model_sanitised"]:
            detail += f"; behind the sanitiser at most {after:.1%} (adaptive)"
        findings.append(finding("BA601", detail, threat="text", success_rates=fired))
    checks = [check("BA601", "text", not fired, success_rates=tricks)] if tricks else []
    bad = {f"{a}/{p}": int((r.success & (~r.valid | _unchanged(r))).sum()) for (a, p), r in results.items()}
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        findings.append(finding(
            "BA603", f"{sum(bad.values())} counted adversarial(s) are invalid or unchanged ({bad})",
            threat="text", counts=bad,
        ))  # fmt: skip
    checks.append(check("BA603", "text", not bad, attacks=len(results)))
    return findings, checks


def _unchanged(r: Any) -> torch.Tensor:
    return torch.tensor([a == b for a, b in zip(r.originals, r.adversarials, strict=True)], dtype=torch.bool)


def text_lines(block: Mapping[str, Any]) -> list[str]:
    """The ``text`` block as markdown for summary.md: a heading, a blank, one bullet per run, a blank."""
    lines = ["**Text attacks** (success over the texts the model got right; invalid edits never count):", ""]
    for r in block["attacks"]:
        if r["status"] != "ran":
            lines.append(f"- {r['attack']} ({r['preset']}): not run: {r['reason']}")
            continue
        lines.append(
            f"- {r['attack']} ({r['preset']}): accuracy under attack **{r['robust_accuracy']:.1%}**, success "
            f"{r['success_rate']:.1%}, {r['mean_queries']:.0f} queries per text, {r['invalid']} invalid"
        )
    s = block["sanitiser"]
    lines.append(
        f"- sanitiser ({s['description']}): clean accuracy {s['clean_accuracy']:.1%} -> "
        f"{s['clean_accuracy_sanitised']:.1%}"
        + "".join(
            f"; {r['attack']}/{r['preset']} success behind it {r['success_rate_sanitised']:.1%}"
            for r in s["rows"]
            if r["success_rate_sanitised"] is not None
        )
    )
    return [*lines, ""]
