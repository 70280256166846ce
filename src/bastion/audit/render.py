"""Write an audit to disk: ``report.html`` (self-contained), ``report.json`` and ``summary.md``.

Every file is written to a temporary name and renamed into place, so a crash never leaves a
half-written report; the JSON goes last and records how long rendering took.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._files import atomic_write
from bastion.audit.findings import CATALOG
from bastion.audit.report import AuditReport, headline_rows
from bastion.audit.taxonomy import ATLAS, OWASP_ML, atlas_url, owasp_url
from bastion.audit.verdict import headline

if TYPE_CHECKING:
    from bastion.audit.sections import Section

__all__ = ["render_html", "render_summary", "training_lines", "write_report"]


def _pct(value: float | None) -> str:
    return (
        "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"
    )


def render_html(report: AuditReport, sections: Sequence[Section] | None = None) -> str:
    """The report as one HTML page: figures are inline PNG data, no script, no network. Each section
    of ``report.pipeline`` draws its own partial (the sections that ran, or ``sections``, or the
    default pipeline's by name)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from bastion.audit.sections import SECTIONS

    known = {s.name: s for s in (*SECTIONS, *report.section_objects, *(sections or ()))}
    data = report.to_dict()
    shown = [known[name] for name in report.pipeline if name in known]
    figures = {s.name: s.figures(data, report.artifacts.get(s.name, {})) for s in shown}
    # Escape everything the report prints (model and data names, finding details, user text): the
    # default extension list does not match "report.html.j2", which left it unescaped.
    escaped = select_autoescape(("html", "htm", "xml", "html.j2"))
    env = Environment(loader=PackageLoader("bastion.audit", "templates"), autoescape=escaped)
    return env.get_template("report.html.j2").render(
        r=data,
        sections=shown,
        figures=figures,
        pct=_pct,
        catalog=CATALOG,
        verdict_line=headline(data),
        atlas=ATLAS,
        owasp=OWASP_ML,
        atlas_url=atlas_url,
        owasp_url=owasp_url,
        headline_rows=headline_rows(data),
    )


def _ids(f: dict[str, Any]) -> str:
    """`` _(ATLAS AML.T0015, ...; OWASP ML01)_``: a finding's framework IDs (old reports: the catalogue's)."""
    check = CATALOG.get(f["code"])
    atlas = f.get("atlas") or (check.atlas if check else ())
    owasp = f.get("owasp") or (check.owasp if check else ())
    return f" _(ATLAS {', '.join(atlas)}; OWASP {', '.join(owasp)})_" if atlas or owasp else ""


def render_summary(report: AuditReport) -> str:
    """A short markdown summary for a pull request."""
    d = report.to_dict()
    verdict = f"{'✅' if d['verdict']['passed'] else '❌'} {headline(d)}"
    modality = d["model"].get("modality")
    lines = [
        f"## bastion audit: {verdict}",
        "",
        f"`{d['model']['name']}` on `{d['data']['name']}` ({d['data']['n_samples']} samples), "
        + (f"{modality} model" if modality in ("text", "tabular") else f"preset `{d['config']['preset']}`")
        + f", seed {d['config']['seed']}; "
        f"clean accuracy {_pct(d['clean']['accuracy'])}.",
        "",
    ]
    if d["threats"]:
        lines += ["| threat | robust accuracy (adaptive) | white-box only |", "|---|---|---|"]
        for t in d["threats"]:
            lines.append(
                f"| {t['label']} | **{_pct(t['robust_accuracy'])}** | {_pct(t['naive_robust_accuracy'])} |"
            )
        lines.append("")
    rows = headline_rows(d)
    if rows:
        lines += ["| threat | clean accuracy | robust accuracy (every attack) | note |", "|---|---|---|---|"]
        for h in rows:
            clean, robust = _pct(h["clean_accuracy"]), _pct(h["robust_accuracy"])
            lines.append(f"| {h['label']} | {clean} | **{robust}** | {h['note']} |")
        lines.append("")
    if d.get("text"):
        from bastion.audit.sections.text import text_lines

        lines += text_lines(d["text"])
    if d.get("tabular"):
        from bastion.audit.sections.tabular import tabular_lines

        lines += tabular_lines(d["tabular"])
    if d.get("certification"):
        lines += _certification_lines(d["certification"])
    if d.get("training_threats"):
        lines += training_lines(d["training_threats"])
    if d.get("privacy"):
        from bastion.audit.sections.privacy import privacy_lines

        lines += privacy_lines(d["privacy"])
    if d.get("physical"):
        from bastion.audit.sections.physical import physical_lines

        lines += physical_lines(d["physical"])
    if d["findings"]:
        lines.append(f"**Findings ({len(d['findings'])})**, failing at severity ≥ {d['verdict']['fail_on']}:")
        lines.append("")
        for f in d["findings"]:
            where = f" ({f['threat']})" if f["threat"] else ""
            lines.append(
                f"- **{f['severity'].upper()} {f['code']}** {f['title']}{where}: {f['detail']}. {f['action']}"
                + _ids(f)
            )
    else:
        lines.append("No findings: every check passed.")
    lines += ["", f"_{d['timing']['seconds']:.0f} s; full report in report.html / report.json._", ""]
    return "\n".join(lines)


def _certification_lines(cert: dict[str, Any]) -> list[str]:
    if cert["method"] == "ibp":
        lines = [
            "**Certified robustness** (interval bound propagation, linf; certifies the network itself):",
            "",
        ]
    else:
        lines = [
            f"**Certified robustness** (randomized smoothing, l2, σ = {cert['params']['sigma']:g}; "
            "certifies the smoothed classifier, not the network the attacks ran on):",
            "",
        ]
    if cert["refused"]:
        lines.append(f"- refused: {cert['refused']}")
    if cert["note"]:
        lines.append(f"- {cert['note']}")
    for c in cert["threats"]:
        if c["status"] != "measured":
            if c["status"] == "not applicable":
                lines.append(f"- {c['label']}: not applicable ({c['note']})")
            continue
        if cert["method"] == "ibp":
            lines.append(
                f"- {c['label']}: attacks {_pct(c['robust_accuracy'])} robust; certified "
                f"**{_pct(c['certified_accuracy'])}** — the truth lies between "
                f"({c['certified_broken']} certified inputs broken)"
            )
        else:
            lines.append(
                f"- {c['label']}: attacks {_pct(c['robust_accuracy'])} robust (network); smoothed classifier "
                f"certified **{_pct(c['certified_accuracy'])}**, {c['abstentions']} abstentions"
            )
    return [*lines, ""]


def training_lines(block: dict[str, Any]) -> list[str]:
    """The ``training_threats`` block as markdown: a heading line, a blank, one bullet per part, a blank."""
    where = ""
    if block["training_data"]:
        where = f" (training data `{block['training_data']}`, {block['n_training_samples']:,} samples)"
    lines = [f"**Training-time threats**{where}:", ""]
    scan = block["model_scan"]
    if scan:
        if scan["refused"]:
            lines.append(f"- backdoor scan (Neural Cleanse): refused: {scan['refused']}")
        elif scan["flagged"]:
            rows = {r["class"]: r for r in scan["classes"]}
            which = ", ".join(
                f"class {rows[k]['name']} (anomaly index {rows[k]['anomaly_index']:.2f})"
                for k in scan["flagged"]
            )
            lines.append(f"- backdoor scan (Neural Cleanse): **backdoor suspected**: {which}")
        else:
            top = max(r["anomaly_index"] for r in scan["classes"])
            lines.append(
                f"- backdoor scan (Neural Cleanse): no class stands out (largest anomaly index {top:.2f} "
                f"≤ {scan['threshold']:g})"
            )
        if scan["note"]:
            lines[-1] += f"; {scan['note']}"
    for data in block.get("data_scans") or ([block["data_scan"]] if block["data_scan"] else []):
        verdict = f"refused: {data['refused']}" if data["refused"] else data["verdict"]
        lines.append(f"- training-data scan ({data['method']}): {verdict}")
    disagreements = block.get("scan_disagreements")
    if disagreements is not None:
        lines.append(
            "- the data scans **disagree**: " + "; ".join(d["message"] for d in disagreements)
            if disagreements
            else "- the data scans agree on every class"
        )
    prov = block["provenance"]
    if prov:
        head = f"- training data against manifest `{prov['manifest']}`: "
        if prov["refused"]:
            lines.append(head + f"refused: {prov['refused']}")
        elif prov["ok"]:
            lines.append(head + f"matches ({prov['files_checked']} file(s), {prov['n_found']:,} samples)")
        else:
            c = prov["counts"]
            lines.append(
                head + f"**mismatch**: samples {c['changed']} changed, {c['added']} added, {c['removed']} "
                f"removed, {c['moved']} moved; files {c['files_changed']} changed, {c['files_added']} added, "
                f"{c['files_removed']} removed"
            )
    return [*lines, ""]


def _write_bytes(handle: Any, content: bytes) -> None:
    handle.write(content)


def write_report(report: AuditReport, out_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Write the three files into ``out_dir`` (created if needed), and beside them the files sections
    declare (:meth:`Section.files`: the physical section's patch PNGs); returns ``{kind: path}`` of the
    three."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    paths = {"html": out / "report.html", "markdown": out / "summary.md", "json": out / "report.json"}
    html, summary = render_html(report), render_summary(report)
    data = report.to_dict()
    for section in report.section_objects:  # the files a section links from report.html (a patch's PNG)
        for name, content in section.files(data, report.artifacts.get(section.name, {})).items():
            if Path(name).name != name or name in {p.name for p in paths.values()}:
                raise ValueError(f"section {section.name!r} names the file {name!r}; give a plain new name")
            atomic_write(out / name, partial(_write_bytes, content=content), mode="wb")
    atomic_write(paths["html"], lambda fh: fh.write(html))
    atomic_write(paths["markdown"], lambda fh: fh.write(summary))
    data["timing"] = {**data["timing"], "render_seconds": time.perf_counter() - start}
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    atomic_write(paths["json"], lambda fh: fh.write(text))
    return {k: str(v) for k, v in paths.items()}
