"""``GET /dashboard``: a small status page, server-rendered HTML with inline CSS, SVG and JS only.

It shows requests, errors, 4xx and 429 answers, detector flags by detector, the drift status of each
monitored model, the predicted-class distribution and the top keys by traffic (key *ids*, never tokens:
the page never sees one), read from the same counters as ``/metrics``. A Content-Security-Policy forbids
the browser any request beyond the page itself, and it refreshes itself every 15 s.

Who may open it is the config's ``dashboard``:

- ``"local"`` (the default): clients on a loopback address only, no key (use an SSH tunnel from elsewhere;
  behind a reverse proxy on the same host every client looks local, so use ``"admin"`` there);
- ``"admin"``: clients that send a key listed in ``admin_keys`` (key ids), as a bearer token, as
  ``X-API-Key``, or as the password of HTTP Basic authentication (the browser asks for it);
- ``"off"``: 404.
"""

from __future__ import annotations

import base64
import html
import ipaddress
import os
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from bastion.serve.wire import error, token

if TYPE_CHECKING:
    from bastion.serve.pipeline import Gateway

__all__ = ["dashboard_route", "render", "summary"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
_REALM = {"WWW-Authenticate": 'Basic realm="bastion dashboard", charset="UTF-8"'}


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "testclient")  # starlette's TestClient calls itself "testclient"


def _dashboard_token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:6].lower() == "basic ":
        try:
            return base64.b64decode(auth[6:].strip()).decode().partition(":")[2] or None
        except (ValueError, UnicodeDecodeError):
            return None
    return token(request)


def _refusal(gw: Gateway, request: Request) -> Response | None:
    mode = gw.config.dashboard
    if mode == "off":
        return error(404, "the dashboard is off (dashboard = 'off'); use /metrics")
    if mode == "local":
        if _loopback(request.client.host if request.client else None):
            return None
        return error(
            403, "the dashboard answers loopback clients only; use an SSH tunnel or dashboard = 'admin'"
        )
    secret = _dashboard_token(request)
    key = gw.keys.authenticate(secret) if secret else None
    if key is None:
        return error(401, "the dashboard needs an admin key (as the Basic auth password)", _REALM)
    if not key.active or key.key_id not in gw.config.admin_keys:
        return error(403, f"key {key.key_id} is not in admin_keys; use an admin key")
    return None


def summary(gw: Gateway) -> dict[str, Any]:
    """The numbers the page shows, from the Prometheus exposition (every worker's, under several)."""
    from prometheus_client.parser import text_string_to_metric_families

    s: dict[str, Any] = {
        "status": defaultdict(float),
        "flags": defaultdict(float),
        "alerts": defaultdict(float),
    }
    s["keys"] = defaultdict(lambda: {"requests": 0.0, "4xx": 0.0, "429": 0.0})
    s["classes"] = defaultdict(lambda: defaultdict(float))
    s["confidence"] = defaultdict(lambda: [0.0, 0.0])
    s["latency"] = [0.0, 0.0]
    for family in text_string_to_metric_families(gw.metrics.exposition().decode()):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "bastion_gateway_requests_total":
                s["status"][labels["status"]] += value
            elif name == "bastion_gateway_key_requests_total":
                s["keys"][labels["key_id"]]["requests"] += value
            elif name == "bastion_gateway_key_refusals_total":
                s["keys"][labels["key_id"]]["4xx"] += value
                if labels["status"] == "429":
                    s["keys"][labels["key_id"]]["429"] += value
            elif name == "bastion_gateway_detector_flags_total":
                s["flags"][labels["detector"]] += value
            elif name == "bastion_gateway_alerts_total":
                s["alerts"][labels["kind"]] += value
            elif name == "bastion_gateway_predicted_class_total":
                s["classes"][labels["model"]][labels["label"]] += value
            elif name in ("bastion_gateway_confidence_sum", "bastion_gateway_confidence_count"):
                s["confidence"][labels["model"]][name.endswith("_count")] += value
            elif name in ("bastion_gateway_request_seconds_sum", "bastion_gateway_request_seconds_count"):
                s["latency"][name.endswith("_count")] += value
    status = s["status"]
    s["requests"] = sum(status.values())
    s["4xx"] = sum(v for k, v in status.items() if k.startswith("4"))
    s["429"] = status.get("429", 0.0)
    s["5xx"] = sum(v for k, v in status.items() if k.startswith("5"))
    s["drift"] = [m.status() for m in gw.drift.values()]
    return s


def _bars(counts: dict[str, float], width: int = 360) -> str:
    """An inline SVG bar chart of ``counts`` (label -> value)."""
    if not counts:
        return "<p class=muted>none yet</p>"
    top = max(counts.values()) or 1.0
    rows = []
    for i, (label, value) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:20]):
        w = max(1.0, (width - 140) * value / top)
        y = i * 20
        rows.append(
            f'<text x="0" y="{y + 14}">{html.escape(label[:16])}</text>'
            f'<rect x="110" y="{y + 3}" width="{w:.1f}" height="14" rx="2"></rect>'
            f'<text x="{114 + w:.1f}" y="{y + 14}">{value:g}</text>'
        )
    return f'<svg width="{width}" height="{20 * len(rows) + 4}" role="img">{"".join(rows)}</svg>'


def _card(title: str, value: str, cls: str = "") -> str:
    value, title = html.escape(value), html.escape(title)
    return f'<div class="card {cls}"><div class=v>{value}</div><div>{title}</div></div>'


def _drift_rows(drift: list[dict[str, Any]]) -> str:
    if not drift:
        return "<p class=muted>drift detection is off (set reference = DATA in the config)</p>"
    rows = "".join(
        f"<tr><td>{html.escape(d['model'])}</td><td class={'bad' if d['drift'] else 'ok'}>"
        f"{'DRIFT' if d['drift'] else 'ok' if d['windows'] else 'waiting'}</td>"
        f"<td>{'-' if d['statistic'] is None else format(d['statistic'], '.3f')}</td><td>{d['windows']}</td>"
        f"<td>{d['alarms']}</td><td>{d['alpha']:.2g}</td><td>{d['pending_rows']}/{d['window']}</td></tr>"
        for d in drift
    )
    head = "<tr><th>model<th>status<th>KS statistic<th>windows<th>alarms<th>α per window<th>next window"
    return f"<table>{head}{rows}</table>"


_STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}.muted{color:#777}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:10px 16px;min-width:110px}.card .v{font-size:22px;font-weight:600}.warn .v{color:#b36b00}
.bad,.err .v{color:#b00020;font-weight:600}.ok{color:#17803d}table{border-collapse:collapse;background:#fff}
td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}svg text{font-size:12px;fill:#333}
svg rect{fill:#3b6fb6}"""
_SCRIPT = """(function(){var t=15,el=document.getElementById('refresh');
setInterval(function(){t-=1;if(t<=0){location.reload();}else if(el){el.textContent=t;}},1000);})();"""


_KEYS_HEAD = "<table><tr><th>key id<th>requests<th>4xx<th>429"


def render(gw: Gateway) -> str:
    """The page's HTML."""
    s = summary(gw)
    conf = {m: f"{sc / n:.3f}" for m, (sc, n) in s["confidence"].items() if n}
    mean_latency = s["latency"][0] / s["latency"][1] * 1000 if s["latency"][1] else 0.0
    cards = "".join(
        [
            _card("requests", f"{s['requests']:g}"),
            _card("5xx errors", f"{s['5xx']:g}", "err" if s["5xx"] else ""),
            _card("4xx refusals", f"{s['4xx']:g}", "warn" if s["4xx"] else ""),
            _card("429 rate-limited", f"{s['429']:g}", "warn" if s["429"] else ""),
            _card("detector flags", f"{sum(s['flags'].values()):g}", "warn" if s["flags"] else ""),
            _card("alerts", f"{sum(s['alerts'].values()):g}", "err" if s["alerts"] else ""),
            _card("mean latency (ms)", f"{mean_latency:.1f}"),
        ]
        + [_card(f"mean confidence · {m}", v) for m, v in conf.items()]
    )
    keys = sorted(s["keys"].items(), key=lambda kv: -kv[1]["requests"])[:10]
    key_rows = "".join(
        f"<tr><td><code>{html.escape(k)}</code></td><td>{v['requests']:g}</td><td>{v['4xx']:g}</td>"
        f"<td>{v['429']:g}</td></tr>"
        for k, v in keys
    )
    classes = "".join(f"<h3>{html.escape(m)}</h3>{_bars(dict(c))}" for m, c in s["classes"].items())
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1"><title>bastion gateway</title>
<link rel=icon href="data:,">
<style>{_STYLE}</style></head><body>
<h1>bastion gateway</h1>
<p class=muted>models: {html.escape(", ".join(sorted(gw.served)))} · worker {os.getpid()} ·
{time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())} · refresh in <span id=refresh>15</span> s</p>
<div class=cards>{cards}</div>
<h2>Drift</h2>{_drift_rows(s["drift"])}
<h2>Detector flags</h2>{_bars(dict(s["flags"]))}
<h2>Top keys by traffic</h2>
{_KEYS_HEAD + key_rows + "</table>" if keys else "<p class=muted>none yet</p>"}
<h2>Predicted classes</h2>{classes or "<p class=muted>none yet</p>"}
<script>{_SCRIPT}</script></body></html>"""


def dashboard_route(app: FastAPI, gw: Gateway) -> None:
    @app.get("/dashboard", tags=["health"], response_class=HTMLResponse)
    async def dashboard(request: Request) -> Response:
        """A status page (HTML, no external assets); who may open it: ``dashboard`` in the config."""
        refused = _refusal(gw, request)
        if refused is not None:
            return refused
        page = await run_in_threadpool(render, gw)
        headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store", "X-Frame-Options": "DENY"}
        return HTMLResponse(page, headers=headers)
