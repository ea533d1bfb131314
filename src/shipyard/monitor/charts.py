"""Charts as SVG strings, drawn on the server: no front-end build, no script library to vendor.

Each function takes plain numbers and returns one self-contained <svg>; every text is escaped. Colours
come from CSS variables of the page, so the charts follow its light or dark theme.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

W, H = 560, 180  # the viewBox every chart draws in; the page scales it to its column
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 12, 26


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * power:
            return step * power
    return 10.0 * power


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value / 1000:.3g}k"
    return f"{value:.3g}"


def _frame(body: str, label: str) -> str:
    return (
        f'<svg viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}" '
        f'preserveAspectRatio="xMidYMid meet" class="chart">{body}</svg>'
    )


def _y_axis(top: float, unit: str) -> str:
    parts = []
    for i in range(5):
        value = top * i / 4
        y = H - PAD_B - (H - PAD_T - PAD_B) * i / 4
        parts.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(value)}{unit}</text>'
        )
    return "".join(parts)


def empty(label: str, message: str = "no data yet") -> str:
    body = f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="muted">{escape(message)}</text>'
    return _frame(body, label)


def lines(
    label: str,
    times: Sequence[float],
    series: dict[str, Sequence[float | None]],
    unit: str = "",
) -> str:
    """Time series sharing one y axis; `None` leaves a gap. Series colours are .s0, .s1, ... in CSS."""
    points = [v for values in series.values() for v in values if v is not None]
    if len(times) < 2 or not points:
        return empty(label)
    top = _nice_max(max(points))
    t0, t1 = times[0], times[-1]
    span = max(t1 - t0, 1e-9)
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def xy(t: float, v: float) -> str:
        return f"{PAD_L + plot_w * (t - t0) / span:.1f},{H - PAD_B - plot_h * v / top:.1f}"

    body = [_y_axis(top, unit)]
    for i, (name, values) in enumerate(series.items()):
        runs: list[list[str]] = [[]]
        for t, v in zip(times, values, strict=True):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(xy(t, v))
        for run in runs:
            if len(run) == 1:
                x, y = run[0].split(",")
                body.append(f'<circle cx="{x}" cy="{y}" r="2" class="s{i}"/>')
            elif run:
                body.append(f'<polyline points="{" ".join(run)}" class="line s{i}"/>')
        body.append(
            f'<text x="{PAD_L + 8 + 90 * i}" y="{PAD_T + 12}" class="legend s{i}">■ {escape(name)}</text>'
        )
    span_s = t1 - t0
    ago = f"-{span_s:.0f} s" if span_s < 120 else f"-{span_s / 60:.0f} min"
    body.append(
        f'<text x="{PAD_L}" y="{H - 6}" class="tick">{ago}</text>'
        f'<text x="{W - PAD_R}" y="{H - 6}" text-anchor="end" class="tick">now</text>'
    )
    return _frame("".join(body), label)


def histogram(label: str, edges: Sequence[float], counts: Sequence[float], unit: str = "") -> str:
    """Bars between consecutive `edges` (len(edges) == len(counts) + 1)."""
    if not counts or sum(counts) == 0:
        return empty(label)
    total = sum(counts)
    shares = [c / total for c in counts]
    top = _nice_max(max(shares) * 100) / 100
    plot_w, plot_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    width = plot_w / len(counts)
    body = [_y_axis(top * 100, "%")]
    for i, share in enumerate(shares):
        h = plot_h * share / top
        x = PAD_L + i * width
        body.append(
            f'<rect x="{x + 1:.1f}" y="{H - PAD_B - h:.1f}" width="{width - 2:.1f}" height="{h:.1f}" '
            f'class="bar"><title>{edges[i]:g}-{edges[i + 1]:g}{unit}: {counts[i]:g}</title></rect>'
        )
    for i in (0, len(counts) // 2, len(counts)):
        x = PAD_L + i * width
        body.append(
            f'<text x="{x:.1f}" y="{H - 8}" text-anchor="middle" class="tick">{edges[i]:g}{unit}</text>'
        )
    return _frame("".join(body), label)


def bars(label: str, names: Sequence[str], values: Sequence[float], threshold: float | None = None) -> str:
    """Horizontal bars, largest first, with a dashed threshold line; bars past it are marked."""
    if not values:
        return empty(label)
    rows = len(values)
    height = max(H, PAD_T + PAD_B + 16 * rows)
    top = _nice_max(max([*values, threshold or 0.0]) * 1.05)
    left, plot_w = 110, W - 110 - PAD_R
    body = []
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        y = PAD_T + 16 * i
        w = plot_w * max(value, 0.0) / top
        over = threshold is not None and value > threshold
        body.append(
            f'<text x="{left - 6}" y="{y + 11}" text-anchor="end" class="tick">{escape(name)}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="11" class="bar{" alert" if over else ""}">'
            f"<title>{escape(name)}: {value:.3f}</title></rect>"
            f'<text x="{left + w + 4:.1f}" y="{y + 11}" class="tick">{value:.3f}</text>'
        )
    if threshold is not None:
        x = left + plot_w * threshold / top
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{PAD_T + 16 * rows}" class="threshold"/>'
            f'<text x="{x + 3:.1f}" y="{PAD_T + 16 * rows + 14}" class="tick">threshold {threshold:g}</text>'
        )
    return (
        f'<svg viewBox="0 0 {W} {height}" role="img" aria-label="{escape(label)}" class="chart">'
        f"{''.join(body)}</svg>"
    )
