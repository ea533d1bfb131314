"""The dashboard: one HTML page per model, drawn on the server from the monitor's snapshot.

The page holds no chart library and needs no build: the charts are SVG (charts.py), and ten lines of
script fetch the page's body again every few seconds and swap it in, so it stays live.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from shipyard.monitor import charts
from shipyard.monitor.drifted import verdict
from shipyard.rollout.gates import describe_variant

REFRESH_S = 3

STYLE = """
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#6b7385; --grid:#e3e6ec; --accent:#2f6fde;
  --accent2:#e07b1f; --ok:#1f9d55; --alert:#d64545; color-scheme: light dark; }
@media (prefers-color-scheme: dark) { :root { --bg:#12151b; --card:#1b2029; --ink:#e6e9ef; --muted:#9aa3b5;
  --grid:#2a303c; --accent:#6ea2ff; --accent2:#f0a04b; --ok:#4cc38a; --alert:#ff6b6b; } }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif; background:var(--bg);
  color:var(--ink); }
header { display:flex; align-items:baseline; gap:16px; padding:18px 28px 6px; flex-wrap:wrap; }
header h1 { margin:0; font-size:20px; } header nav a { color:var(--accent); margin-right:12px; }
.muted, .tick { color:var(--muted); fill:var(--muted); } .tick { font-size:11px; }
main { padding:8px 28px 28px; }
.version { margin-top:14px; } .version h2 { font-size:16px; margin:8px 0; }
.tiles { display:grid; grid-template-columns:repeat(auto-fill,minmax(135px,1fr)); gap:12px; }
.tile { background:var(--card); border-radius:10px; padding:12px 14px; box-shadow:0 1px 2px #0002; }
.tile .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.tile .value { font-size:20px; font-weight:600; margin-top:2px; white-space:nowrap; }
.tile .value.alert { color:var(--alert); } .tile .value.ok { color:var(--ok); }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(420px,1fr)); gap:12px; margin-top:12px; }
.card { background:var(--card); border-radius:10px; padding:12px 14px 8px; box-shadow:0 1px 2px #0002; }
.card h3 { margin:0 0 6px; font-size:13px; font-weight:600; } .card.wide { grid-column:1 / -1; }
.card.wide svg.chart { max-width:640px; }
svg.chart { width:100%; height:auto; display:block; font-family:inherit; }
svg .grid { stroke:var(--grid); stroke-width:1; } svg text { font-size:11px; }
svg .line { fill:none; stroke-width:2; } svg .s0 { stroke:var(--accent); fill:var(--accent); }
svg .s1 { stroke:var(--accent2); fill:var(--accent2); } svg .s2 { stroke:var(--alert); fill:var(--alert); }
svg polyline.s0, svg polyline.s1, svg polyline.s2 { fill:none; }
svg .legend { font-size:12px; stroke:none; } svg .bar { fill:var(--accent); }
svg .bar.alert { fill:var(--alert); }
svg .threshold { stroke:var(--alert); stroke-dasharray:4 3; stroke-width:1.5; }
.rollout ol.steps li.now { font-weight:600; } .rollout ol.steps li.done { color:var(--muted); }
.rollout table.gates td { padding:2px 10px 2px 0; vertical-align:top; }
.rollout tr.fail td:nth-child(2) { color:var(--alert); font-weight:600; }
.rollout tr.pass td:nth-child(2) { color:var(--ok); }
"""

SCRIPT = f"""
setInterval(async () => {{
  try {{
    const r = await fetch(location.pathname + "?fragment=1", {{cache: "no-store"}});
    if (r.ok) document.querySelector("main").innerHTML = await r.text();
  }} catch (e) {{}}
}}, {REFRESH_S * 1000});
"""


def page(model: str, snapshot: dict[str, Any], models: list[str]) -> str:
    nav = " ".join(f'<a href="/dashboard/{escape(m)}">{escape(m)}</a>' for m in models)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(model)} · shipyard</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{escape(model)}</h1><span class="muted">shipyard · refreshes every {REFRESH_S} s'
        f"</span><nav>{nav}</nav></header><main>{fragment(snapshot)}</main>"
        f"<script>{SCRIPT}</script></body></html>"
    )


def index(models: list[str]) -> str:
    items = "".join(f'<li><a href="/dashboard/{escape(m)}">{escape(m)}</a></li>' for m in models)
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>shipyard</title><style>{STYLE}"
        f"</style></head><body><header><h1>shipyard</h1></header><main><ul>{items}</ul></main></body></html>"
    )


def fragment(snapshot: dict[str, Any]) -> str:
    """What refreshes: the model's rollout, if it has had one, then one section per version, the
    default one first."""
    rollout = snapshot.get("rollout")
    return (_rollout(rollout) if rollout else "") + "".join(_version(v) for v in snapshot["versions"])


MARKS = {"pass": "ok", "fail": "FAILED", "wait": "waiting", "skip": "-"}


def _rollout(r: dict[str, Any]) -> str:
    """The plan with its current step, the gates' last judgement, each variant's figures, the finding."""
    active = r["status"] in ("running", "paused")
    steps = []
    for i, step in enumerate(r["steps"]):
        now = active and i == r["step"]
        done = i < r["step"] or r["status"] == "promoted"
        mark = f" ({escape(r['status'])})" if now else " ✓" if done else ""
        steps.append(f'<li class="{"now" if now else "done" if done else ""}">{escape(step)}{mark}</li>')
    verdict = r.get("verdict") or {}
    gates = "".join(
        f'<tr class="{escape(g["outcome"])}"><td>{escape(g["name"])}</td>'
        f"<td>{escape(MARKS.get(g['outcome'], g['outcome']))}</td><td>{escape(g['figures'])}</td></tr>"
        for g in verdict.get("gates", [])
    )
    variants = "".join(
        f"<li>version {escape(number)}: {escape(describe_variant(v))}</li>"
        for number, v in verdict.get("variants", {}).items()
    )
    lines = [
        f'<section class="rollout" data-status="{escape(r["status"])}"><h2>rollout of version '
        f'{r["candidate"]} against {r["baseline"]} <span class="muted">{escape(r["status"])}</span></h2>',
        f'<div class="card"><ol class="steps">{"".join(steps)}</ol>',
        f'<table class="gates">{gates}</table>' if gates else "",
        f"<ul>{variants}</ul>" if variants else "",
        f"<p>{escape(verdict['finding'])}</p>" if "finding" in verdict else "",
        f'<p class="muted">{escape(r["reason"])}</p>' if r.get("reason") else "",
        "</div></section>",
    ]
    return "".join(lines)


def _version(v: dict[str, Any]) -> str:
    drift, accuracy, cost = v["drift"], v["accuracy"], v["cost"]
    tag = " · default" if v["default"] else ""
    tiles = [
        _tile("throughput", f"{v['throughput_rps']:.1f}/s"),
        _tile("p50 latency", _ms(v["latency_ms"]["p50"])),
        _tile("p99 latency", _ms(v["latency_ms"]["p99"])),
        _tile("error rate", f"{v['error_rate'] * 100:.2f}%", "alert" if v["error_rate"] > 0.01 else "ok"),
        _tile("requests", f"{v['requests']:,}"),
        _drift_tile(drift),
        _tile(
            "live accuracy",
            "-" if accuracy["value"] is None else f"{accuracy['value'] * 100:.1f}%",
            "",
            f"{accuracy['labelled']} labelled",
        ),
        _tile(
            "cost / 1k predictions",
            "-" if cost["per_1k"] is None else _dollars(cost["per_1k"]),
            "",
            f"at ${cost['price_per_hour']:g}/h",
        ),
    ]
    series = v["series"]
    cards = [
        _card("Throughput (requests/s)", charts.lines("throughput", series["t"], {"req/s": series["rps"]})),
        _card(
            "Latency (ms)",
            charts.lines(
                "latency", series["t"], {"p50": series["p50_ms"], "p99": series["p99_ms"]}, unit=" ms"
            ),
        ),
        _card("Error rate (%)", charts.lines("errors", series["t"], {"errors %": series["error_pct"]})),
        _card(
            "Confidence",
            charts.histogram("confidence", v["confidence"]["edges"], v["confidence"]["counts"]),
        ),
        _card(
            f"Drift per feature (PSI, window of {drift.get('rows', 0)} rows)", _drift_chart(drift), wide=True
        ),
    ]
    return (
        f'<section class="version" data-version="{v["version"]}"><h2>version {v["version"]}{tag}'
        f' <span class="muted">{escape(v["state"])}</span></h2>'
        f'<div class="tiles">{"".join(tiles)}</div><div class="grid">{"".join(cards)}</div></section>'
    )


def _drift_tile(drift: dict[str, Any]) -> str:
    if drift.get("status") == "no-reference":
        return _tile("drift", "-", "", "no reference profile")
    if drift.get("status") == "warming-up":
        return _tile("drift", "-", "", f"{drift.get('rows', 0)} rows so far")
    flagged = bool(drift.get("flagged"))
    detail = verdict(drift) if flagged else "within thresholds"
    return _tile("drift", "DRIFT" if flagged else "OK", "alert" if flagged else "ok", detail)


def _drift_chart(drift: dict[str, Any]) -> str:
    features = sorted(drift.get("features", []), key=lambda f: -f["psi"])[:16]
    if not features:
        reason = {"no-reference": "no reference profile: shipyard monitor reference NAME FILE"}
        return charts.empty("drift", reason.get(drift.get("status", ""), "no data yet"))
    return charts.bars(
        "drift", [f["name"] for f in features], [f["psi"] for f in features], drift.get("threshold")
    )


def _tile(label: str, value: str, tone: str = "", detail: str = "") -> str:
    sub = f'<div class="muted">{escape(detail)}</div>' if detail else ""
    return (
        f'<div class="tile"><div class="label">{escape(label)}</div>'
        f'<div class="value {tone}">{escape(value)}</div>{sub}</div>'
    )


def _card(title: str, svg: str, wide: bool = False) -> str:
    return f'<div class="card{" wide" if wide else ""}"><h3>{escape(title)}</h3>{svg}</div>'


def _dollars(value: float) -> str:
    """Enough decimals to show two significant digits: cheap models cost fractions of a cent."""
    decimals = 2 if value >= 0.01 else min(10, 1 - math.floor(math.log10(value))) if value > 0 else 2
    return f"${value:.{decimals}f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
