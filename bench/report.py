"""BENCHMARKS.md and the throughput plot, from the results JSON of bench/run.py."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

TITLES = {
    "digits": "digits MLP (64 -> 64 -> 10: serving overhead)",
    "cnn": "small CNN on 3x64x64 (compute-bound)",
}


def cpu() -> str:
    """The processor and the vector units ONNX Runtime's kernels use, which set how a compute-bound
    model's speed compares with everything else (bench/batch.py's CNN: 2.2x the rows a second on an
    AVX-512 + AMX machine as on an AVX2 one, its Parquet read only 1.4x as fast), so figures from two
    machines compare only with them."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown processor"
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    units = [name for flag, name in (("avx512f", "AVX-512"), ("amx_tile", "AMX")) if flag in flags]
    units = units or (["AVX2"] if "avx2" in flags else [])
    return f"{model}, {' + '.join(units)}" if units else model


def _row_label(row: dict[str, Any]) -> str:
    batching = f", batching {row['batching']}" if row["batching"] != "-" else ""
    return f"{row['system']} {row['transport']}{batching}"


def ceiling(data: dict[str, Any]) -> tuple[int, float]:
    """The best in-process batch size and its samples/s (batch 1 included)."""
    ip = data["in_process"]
    if ip["batch1"]["samples_per_s"] >= ip["best"]["samples_per_s"]:
        return 1, ip["batch1"]["samples_per_s"]
    return ip["best_batch"], ip["best"]["samples_per_s"]


def _table(name: str, data: dict[str, Any]) -> list[str]:
    ip = data["in_process"]
    best_batch, ceiling_rate = ceiling(data)
    naive = {r["concurrency"]: r["samples_per_s"] for r in data["rows"] if r["system"] == "naive FastAPI"}
    lines = [
        f"### {TITLES.get(name, name)}",
        "",
        f"In-process ONNX Runtime: batch 1 **{ip['batch1']['samples_per_s']:,.0f} samples/s** "
        f"(p50 {ip['batch1']['p50_ms']:.3f} ms); best batch ({best_batch}) **{ceiling_rate:,.0f} samples/s** "
        "(the ceiling).",
        "",
        "| system | transport | batching | concurrency | samples/s | p50 ms | p90 ms | p99 ms | errors "
        "| x naive | % of ceiling | server CPU ms/request |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        ratio = r["samples_per_s"] / naive[r["concurrency"]] if naive.get(r["concurrency"]) else float("nan")
        lines.append(
            f"| {r['system']} | {r['transport']} | {r['batching']} | {r['concurrency']} | "
            f"{r['samples_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{r['errors']} | {ratio:.2f} | {100 * r['samples_per_s'] / ceiling_rate:.0f}% | "
            f"{r.get('server_cpu_ms_per_request', float('nan')):.3f} |"
        )
    return [*lines, ""]


def _best(data: dict[str, Any], concurrency: int, **match: str) -> dict[str, Any]:
    rows = [
        r
        for r in data["rows"]
        if r["concurrency"] == concurrency
        and r["system"] == "shipyard"
        and all(r[k] == v for k, v in match.items())
    ]
    return max(rows, key=lambda r: r["samples_per_s"])


def targets(results: dict[str, Any]) -> list[str]:
    digits, cnn = results["models"]["digits"], results["models"]["cnn"]
    naive64 = next(r for r in digits["rows"] if r["system"] == "naive FastAPI" and r["concurrency"] == 64)
    best64 = _best(digits, 64)
    cnn64 = _best(cnn, 64)
    cnn_ceiling = ceiling(cnn)[1]
    c1 = _best(digits, 1, transport="HTTP JSON", batching="on")
    ip1 = digits["in_process"]["batch1"]["p50_ms"]
    on1 = _best(digits, 1, transport="HTTP binary", batching="on")
    off1 = _best(digits, 1, transport="HTTP binary", batching="off")
    lines = [
        "| target | measured | met |",
        "|---|---|---|",
        f"| digits, concurrency 64: best shipyard >= 3x naive | {_row_label(best64)}: "
        f"{best64['samples_per_s']:,.0f} vs {naive64['samples_per_s']:,.0f} samples/s = "
        f"**{best64['samples_per_s'] / naive64['samples_per_s']:.2f}x** | "
        f"{'yes' if best64['samples_per_s'] >= 3 * naive64['samples_per_s'] else 'no'} |",
        f"| CNN, concurrency 64: >= 85% of the in-process ceiling | {_row_label(cnn64)}: "
        f"{cnn64['samples_per_s']:,.0f} vs {cnn_ceiling:,.0f} samples/s = "
        f"**{100 * cnn64['samples_per_s'] / cnn_ceiling:.0f}%** | "
        f"{'yes' if cnn64['samples_per_s'] >= 0.85 * cnn_ceiling else 'no'} |",
        f"| digits, concurrency 1, HTTP JSON: p50 <= in-process batch-1 p50 + 1 ms | "
        f"{c1['p50_ms']:.3f} ms vs {ip1:.3f} ms: **+{c1['p50_ms'] - ip1:.3f} ms** | "
        f"{'yes' if c1['p50_ms'] <= ip1 + 1 else 'no'} |",
        f"| digits, concurrency 1: batching on as fast as off (HTTP binary) | p50 {on1['p50_ms']:.3f} ms on, "
        f"{off1['p50_ms']:.3f} ms off; {on1['samples_per_s']:,.0f} vs {off1['samples_per_s']:,.0f} samples/s | "
        f"{'yes' if on1['p50_ms'] <= off1['p50_ms'] * 1.1 else 'no'} |",
    ]
    soak = results.get("soak")
    if soak:
        growth = 100 * (soak["rss_end_kib"] - soak["rss_start_kib"]) / soak["rss_start_kib"]
        half = soak.get("rss_half_kib", soak["rss_start_kib"])
        late = 100 * (soak["rss_end_kib"] - half) / half
        lines.append(
            f"| soak {soak['seconds']:.0f} s at concurrency 64: no errors, RSS flat (< 5% over the second "
            f"half, once bounded buffers are full) | {soak['requests']:,} requests, {soak['errors']} errors; "
            f"RSS {soak['rss_start_kib'] / 1024:.1f} -> {half / 1024:.1f} MiB at half time ({growth:+.1f}% "
            f"overall: the prediction-id index filling to its 100k bound) -> {soak['rss_end_kib'] / 1024:.1f} MiB "
            f"(**{late:+.1f}%** over the second half) | {'yes' if soak['errors'] == 0 and late < 5 else 'no'} |"
        )
    return lines


def limits(results: dict[str, Any]) -> list[str]:
    """What bounds the figures on this machine, computed from them."""
    digits, cnn = results["models"]["digits"], results["models"]["cnn"]
    compute_ms = 1000 / ceiling(cnn)[1]
    cnn64 = _best(cnn, 64)
    cnn8 = _best(cnn, 8)
    d64 = _best(digits, 64)
    g64 = _best(digits, 64, transport="gRPC")
    return [
        "## What limits it",
        "",
        f"- **2 cores for three parties.** The CNN's ceiling is one ORT thread computing flat out "
        f"({compute_ms:.2f} ms per image). Served, the same core also has to receive, decode and answer "
        f"each request: the server spends {cnn64['server_cpu_ms_per_request']:.2f} ms of CPU per request at "
        f"concurrency 64 (HTTP binary, 48 KiB per image), and the load generator needs the other core for "
        f"64 connections. The best CNN cell is concurrency 8 ({cnn8['samples_per_s']:,.0f} samples/s, "
        f"{100 * cnn8['samples_per_s'] / ceiling(cnn)[1]:.0f}% of the ceiling), where the client costs least. "
        "On a machine with cores to spare for the event loop and the client (or with `--instances`/"
        "`--workers` on more cores), the ORT thread would be the only limit.",
        f"- **The HTTP stack.** On the digits model the server spends "
        f"{d64['server_cpu_ms_per_request']:.2f} ms of CPU per request at concurrency 64 ({_row_label(d64)}); "
        "py-spy shows uvicorn's protocol, Starlette's routing and the asyncio hand-offs, not ONNX Runtime "
        "(the model itself runs in microseconds). For scale: a bare Starlette endpoint that only reads the "
        "body answered about 12,000 requests/s (0.07 ms CPU each) to the same client at concurrency 64, "
        "measured once by hand on this machine, not by `make bench`.",
        f"- **gRPC** costs more CPU per request than HTTP in grpcio's asyncio server "
        f"({g64['server_cpu_ms_per_request']:.2f} ms at concurrency 64 vs "
        f"{d64['server_cpu_ms_per_request']:.2f} ms), so HTTP binary is the fastest transport here.",
        "- **Garbage collection.** Before the server froze its start-up objects (`gc.freeze()` after "
        "loading), each full collection rescanned ~135k long-lived objects for ~90 ms with the event "
        "loop stopped, every ~0.35 s under load: that was the p99 tail at concurrency 64 (timed with "
        "`gc.callbacks`).",
        "",
    ]


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["models"])
    fig, axes = plt.subplots(1, len(names), figsize=(7 * len(names), 5))
    for ax, name in zip(axes, names, strict=True):
        data = results["models"][name]
        series: dict[str, list[tuple[int, float]]] = {}
        for r in data["rows"]:
            series.setdefault(_row_label(r), []).append((r["concurrency"], r["samples_per_s"]))
        for label, points in series.items():
            xs, ys = zip(*sorted(points), strict=True)
            style = "--" if "naive" in label else ("-" if "on" in label else ":")
            ax.plot(xs, ys, style, marker="o", label=label)
        ax.axhline(ceiling(data)[1], color="black", lw=1, label="in-process ceiling")
        ax.axhline(
            data["in_process"]["batch1"]["samples_per_s"],
            color="grey",
            lw=1,
            ls="-.",
            label="in-process batch 1",
        )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")  # the digits ceiling is three orders of magnitude above any server
        ax.set_xticks([1, 8, 64], ["1", "8", "64"])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("samples/s")
        ax.set_title(TITLES.get(name, name))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def monitoring(results: dict[str, Any]) -> list[str]:
    """What watching every prediction costs: the same server, monitoring on and off, side by side."""
    rows = results.get("monitoring")
    if not rows:
        return []
    by = {(r["monitoring"], r["concurrency"]): r for r in rows}
    lines = [
        "## Monitoring overhead",
        "",
        "digits, HTTP binary, batching on; monitoring on = Prometheus metrics, drift against a reference "
        "profile, the prediction log (every request, up to its 1,000/s cap) and the dashboard's series.",
        "",
        "| concurrency | on: samples/s | off: samples/s | on / off | on: p50 ms | off: p50 ms | on: p99 ms | off: p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted({r["concurrency"] for r in rows}):
        on, off = by.get(("on", c)), by.get(("off", c))
        if on is None or off is None:
            continue
        lines.append(
            f"| {c} | {on['samples_per_s']:,.0f} | {off['samples_per_s']:,.0f} | "
            f"{on['samples_per_s'] / off['samples_per_s']:.2f} | {on['p50_ms']:.2f} | {off['p50_ms']:.2f} | "
            f"{on['p99_ms']:.2f} | {off['p99_ms']:.2f} |"
        )
    return [*lines, ""]


def write(results: dict[str, Any], md: Path, png: Path) -> None:
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {m['date']} by `make bench` on {m['cpus']} cores ({m['cpu']}), Python {m['python']}, "
        f"ONNX Runtime {m['onnxruntime']}. {m['ort_threads']}; the load generator shares the cores with the "
        f"server, so read the ratios (all measured side by side in this one run), not the absolute figures. "
        f"Each cell: a closed loop of N clients for {m['duration_s']:g} s after a warm-up.",
        "",
        "## Targets",
        "",
        *targets(results),
        "",
        *limits(results),
        "## Results",
        "",
        "![throughput vs concurrency](results/throughput.png)",
        "",
    ]
    for name, data in results["models"].items():
        lines += _table(name, data)
    lines += monitoring(results)
    lines += overload(results.get("overload", {}))
    lines += [
        "Raw figures: `bench/results/latest.json`. How the scenarios work and how to rerun them: "
        "`bench/README.md`.",
        "",
    ]
    md.write_text("\n".join(lines))
    plot(results, png)


def _ms(value: float | None) -> str:
    """Milliseconds; JSON turns a NaN (nothing measured) into null."""
    return "-" if value is None or value != value else f"{value:,.1f}"


def _errors(run: dict[str, Any]) -> str:
    w = run["wrk"]
    parts = [
        f"{w[k]:,} {k.split('_')[0]}"
        for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
        if w[k]
    ]
    parts += [_counts(run["other_statuses"])] if run["other_statuses"] else []
    if w.get("busy_without_retry_after"):
        parts.append(f"{w['busy_without_retry_after']:,} x 503 without Retry-After")
    return ", ".join(parts) or "0"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n:,} x {what}" for what, n in sorted(counts.items())) or "none"


def _few(p: dict[str, Any], setup: dict[str, Any]) -> str:
    need = setup.get("min_answers", 0)
    return f" (too few to judge: {need} needed)" if p["answered_200"] < need else ""


def _after(run: dict[str, Any]) -> str:
    if run.get("server_exit_code") is not None:
        return f"**the server exited** ({run['server_exit_code']})"
    if not run["drained"]:
        return f"**not answering promptly {run['drain_s']:.0f} s after the load**"
    return f"back to prompt answers {run['drain_s']:.1f} s after the load"


def _fresh(fresh: dict[str, Any]) -> str:
    missed = fresh["tries"] - fresh["answered"]
    text = f"{_ms(fresh['ttfb_max_ms'])} ms (p50 {_ms(fresh['ttfb_p50_ms'])} ms)"
    return text + (
        f"; {missed} of {fresh['tries']} had no answer in {fresh['timeout_s']:g} s" if missed else ""
    )


def overload(results: dict[str, Any]) -> list[str]:
    """The Overload section, from bench/overload.py's results."""
    if not results:
        return []
    sat, runs, probe = results["saturation"], results["runs"], results["probe_setup"]
    peak = sat.get("peak_with_probe_per_s", sat["peak_per_s"])
    yes = {True: "yes", False: "**no**"}
    lines = [
        "## Overload",
        "",
        f"Measured {results['machine']['date']} by `bench/overload.py`: `shipyard serve digits` with its "
        "defaults (monitoring and batching on, one ORT thread), wrk `-t1` POSTing the friendly API "
        f'(`{{"input": [64 floats]}}`) on the same {results["machine"]["cpus"]} cores. Saturation: the '
        "fewest connections within 5% of the peak served/s while doubling them. admitted/s counts 200s only; "
        "wrk's p99 is over every answer (fast 503s included), the probe's over its 200s alone "
        f"({probe['clients']} clients on kept-alive connections, each sending its next request "
        f"{probe['interval_s']:g} s after a 200 and as long as Retry-After says after a 503), and the p99 "
        "target compares the probe with itself beside wrk at saturation. The overload runs have the probe and "
        "the fresh clients on the same cores as wrk and the server, so '% of peak' compares them with wrk's "
        "served/s at saturation with the probe beside it too (the like-for-like peak; the search's own peak, "
        "without the probe, is given as well). A fresh client opens a new connection and times its first "
        "byte, whatever the status.",
        "",
        "Served/s while doubling the connections: "
        + ", ".join(f"{st['connections']}: {st['ok_per_s']:,.0f}" for st in sat["steps"])
        + f". Saturation: **{sat['concurrency']} connections**, peak {sat['peak_per_s']:,.0f}/s alone and "
        f"**{peak:,.0f}/s with the probe beside it**, p99 {_ms(sat['p99_ms'])} ms.",
        "",
        "| scenario | concurrency | admitted/s | % of peak | 503/s | errors | p99 admitted (wrk / probe) ms "
        "| fresh-client TTFB max | RSS start -> peak -> end MiB | met? |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for name, t in sat["transports"].items():
        probe_p99 = _ms(sat["probe_p99_ms"]) if name == "friendly JSON" else "-"
        lines.append(
            f"| saturation, {name} | {t['connections']} | {t['ok_per_s']:,.0f} | {100 * t['ok_per_s'] / peak:.0f}% "
            f"| {t['busy_per_s']:,.0f} | {t['connect_errors'] + t['read_errors'] + t['write_errors'] + t['timeouts']} "
            f"| {_ms(t['p99_ms'])} / {probe_p99} | - | - | - |"
        )
    for run in runs.values():
        w = run["wrk"]
        mib = "{:.0f} -> {:.0f} -> {:.0f}".format(
            run["rss_start_kib"] / 1024, run["rss_peak_kib"] / 1024, run["rss_end_kib"] / 1024
        )
        lines.append(
            f"| {run['rule']} | {run['connections']:,} | {w['ok_per_s']:,.0f} | "
            f"{100 * w['ok_per_s'] / peak:.0f}% | {w['busy_per_s']:,.0f} | {_errors(run)} | "
            f"{_ms(w['p99_ms'])} / {_ms(run['probe']['p99_ms'])} | {_fresh(run['fresh'])} | {mib} | "
            f"{yes[all(run['met'].values())]} |"
        )
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    for key, run in runs.items():
        w, met, p = run["wrk"], run["met"], run["probe"]
        growth = max(run["rss_peak_kib"], run["rss_end_kib"]) - run["rss_start_kib"]
        lines += [
            f"| {key}: admitted >= 80% of peak | {w['ok_per_s']:,.0f} of {peak:,.0f}/s = "
            f"**{100 * w['ok_per_s'] / peak:.1f}%** | {yes[met['admitted']]} |",
            f"| {key}: p99 of admitted <= 4x saturation p99 | probe **{_ms(p['p99_ms'])} ms** over "
            f"{p['answered_200']} answers{_few(p, probe)} ({_counts(p['statuses'])}, {p['errors']} errors) vs 4 x "
            f"{_ms(sat['probe_p99_ms'])} ms (the probe at saturation; wrk's saturation p99: "
            f"{_ms(sat['p99_ms'])} ms; wrk here, all statuses: {_ms(w['p99_ms'])} ms) | {yes[met['p99']]} |",
            f"| {key}: a fresh client's answer or 503 in <= 1 s | max {_fresh(run['fresh'])}; outcomes "
            f"{_counts(run['fresh']['outcomes'])} | {yes[met['fresh']]} |",
            f"| {key}: RSS flat (growth <= 10% of start) | {growth / 1024:+.1f} MiB "
            f"({100 * growth / run['rss_start_kib']:+.0f}%); {_after(run)} | {yes[met['rss']]} |",
        ]
    return [*lines, ""]


def replace_section(md: Path, section: list[str]) -> None:
    """Put `section` (starting with its `## ` title) in place of the section of that title in `md`,
    or before the closing "Raw figures" line: the other sections stay as they were."""
    lines = md.read_text().splitlines() if md.exists() else []
    title = section[0]
    if title in lines:
        start = lines.index(title)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "Raw figures"))),
            len(lines),
        )
    else:
        start = end = next((i for i, line in enumerate(lines) if line.startswith("Raw figures")), len(lines))
    md.write_text("\n".join([*lines[:start], *section, *lines[end:]]) + "\n")


def finish(name: str, results: dict[str, Any], quick: bool, lines: list[str]) -> None:
    """A scenario's end: its results in bench/results/NAME.json (NAME-quick.json with `quick`), its
    section printed and, after a full run, put in place in BENCHMARKS.md."""
    bench = Path(__file__).parent
    out = bench / "results" / (f"{name}-quick.json" if quick else f"{name}.json")
    out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    print("\n".join(lines))
    if not quick:
        replace_section(bench / "BENCHMARKS.md", lines)
    print(f"wrote {out}")


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder for a scenario's inputs (files of up to some GB), removed whatever happens."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def command_line(doc: str, run: Callable[[bool, int | None], object], quick: str, rounds: str) -> None:
    """A scenario run alone: `--quick` (what it makes shorter: `quick`) and `--rounds`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--rounds", type=int, default=None, help=rounds)
    args = parser.parse_args()
    run(args.quick, args.rounds)
