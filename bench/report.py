"""BENCHMARKS.md and the throughput plot, from the results JSON of bench/run.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TITLES = {
    "digits": "digits MLP (64 -> 64 -> 10: serving overhead)",
    "cnn": "small CNN on 3x64x64 (compute-bound)",
}


def _row_label(row: dict[str, Any]) -> str:
    batching = f", batching {row['batching']}" if row["batching"] != "-" else ""
    return f"{row['system']} {row['transport']}{batching}"


def _table(name: str, data: dict[str, Any]) -> list[str]:
    ip = data["in_process"]
    ceiling = ip["best"]["samples_per_s"]
    naive = {r["concurrency"]: r["samples_per_s"] for r in data["rows"] if r["system"] == "naive FastAPI"}
    lines = [
        f"### {TITLES.get(name, name)}",
        "",
        f"In-process ONNX Runtime: batch 1 **{ip['batch1']['samples_per_s']:,.0f} samples/s** "
        f"(p50 {ip['batch1']['p50_ms']:.3f} ms); best batch ({ip['best_batch']}) **{ceiling:,.0f} samples/s** "
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
            f"{r['errors']} | {ratio:.2f} | {100 * r['samples_per_s'] / ceiling:.0f}% | "
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
    cnn_ceiling = cnn["in_process"]["best"]["samples_per_s"]
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
        lines.append(
            f"| soak {soak['seconds']:.0f} s at concurrency 64: no errors, RSS growth < 5% | "
            f"{soak['requests']:,} requests, {soak['errors']} errors; RSS {soak['rss_start_kib'] / 1024:.1f} -> "
            f"{soak['rss_end_kib'] / 1024:.1f} MiB (**{growth:+.1f}%**) | "
            f"{'yes' if soak['errors'] == 0 and growth < 5 else 'no'} |"
        )
    return lines


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
        ax.axhline(
            data["in_process"]["best"]["samples_per_s"], color="black", lw=1, label="in-process ceiling"
        )
        ax.axhline(
            data["in_process"]["batch1"]["samples_per_s"],
            color="grey",
            lw=1,
            ls="-.",
            label="in-process batch 1",
        )
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 8, 64], ["1", "8", "64"])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("samples/s")
        ax.set_title(TITLES.get(name, name))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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
        "## Results",
        "",
        "![throughput vs concurrency](results/throughput.png)",
        "",
    ]
    for name, data in results["models"].items():
        lines += _table(name, data)
    lines += [
        "Raw figures: `bench/results/latest.json`. How the scenarios work and how to rerun them: "
        "`bench/README.md`.",
        "",
    ]
    md.write_text("\n".join(lines))
    plot(results, png)
