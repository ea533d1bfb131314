"""Every optimization method on the two benchmark models, measured the way `shipyard optimize` does,
against the targets; writes bench/results/optimize.json and the table in docs/optimize.md.

    python bench/optimize.py [--quick]

Both models are trained here on scikit-learn's digits with a held-out test split (the CNN sees the
8x8 digits upscaled to 3x64x64), so accuracy means something. No downloads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from models import DigitsMLP, SmallCNN
from report import cpu

import shipyard
from shipyard.config import Settings
from shipyard.optimize import Options, Timing, optimize
from shipyard.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "optimize.md"
RESULTS = ROOT / "bench" / "results" / "optimize.json"
LABELS = [str(i) for i in range(10)]


def fit(
    model: torch.nn.Module, X: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch: int = 64
) -> torch.nn.Module:
    torch.manual_seed(0)
    xs, ys = torch.from_numpy(X), torch.from_numpy(y)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for epoch in range(epochs):
        for idx in torch.randperm(len(xs)).split(batch):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            optimizer.step()
        print(f"  epoch {epoch + 1}/{epochs}", flush=True)
    return model.eval()


def images(X: np.ndarray) -> np.ndarray:
    """8x8 digits (0..16) as 3x64x64 images, standardised (the CNN has no normalisation layer and
    barely learns from raw [0, 1] pixels that are mostly 0)."""
    small = torch.from_numpy((X / 16.0).reshape(-1, 1, 8, 8).astype(np.float32))
    big = torch.nn.functional.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    return ((big.repeat(1, 3, 1, 1).numpy() - PIXEL_MEAN) / PIXEL_STD).astype(np.float32)


PIXEL_MEAN, PIXEL_STD = 0.306, 0.325  # of the upscaled training images


def prepare(out: Path, quick: bool) -> Registry:
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    np.savez(out / "digits-train.npz", X=X_train, y=y_train)
    np.savez(out / "digits-test.npz", X=X_test, y=y_test)
    np.savez(out / "cnn-train.npz", X=images(X_train), y=y_train)
    np.savez(out / "cnn-test.npz", X=images(X_test), y=y_test)
    registry = Registry.open(Settings(home=out / "home"))

    print("training the digits MLP", flush=True)
    torch.manual_seed(0)
    mlp = fit(DigitsMLP(), X_train, y_train, epochs=60, lr=1e-2)
    torch.jit.save(torch.jit.script(mlp), out / "digits.pt")
    shipyard.import_torch(mlp, torch.zeros(1, 64), name="digits", labels=LABELS, registry=registry)

    print("training the small CNN on upscaled digits", flush=True)
    torch.manual_seed(0)
    cnn = fit(SmallCNN(), images(X_train), y_train, epochs=1 if quick else 12, lr=1e-3, batch=32)
    torch.jit.save(torch.jit.script(cnn), out / "cnn.pt")
    shipyard.import_torch(cnn, torch.zeros(1, 3, 64, 64), name="cnn", labels=LABELS, registry=registry)
    return registry


def runs(out: Path) -> list[tuple[str, str, Options]]:
    digits_train, cnn_train = out / "digits-train.npz", out / "cnn-train.npz"
    return [
        ("digits", "dynamic-int8", Options()),
        ("digits", "static-int8", Options(calibration=digits_train)),
        ("digits", "fp16", Options()),
        ("digits", "prune", Options(sparsity=0.5)),
        (
            "digits",
            "prune",
            Options(
                sparsity=0.8, torch_model=out / "digits.pt", train=digits_train, epochs=10, learning_rate=1e-2
            ),
        ),
        ("digits", "distill", Options(train=digits_train, width=0.25)),
        ("cnn", "dynamic-int8", Options()),
        ("cnn", "static-int8", Options(calibration=cnn_train)),
        ("cnn", "fp16", Options()),
        ("cnn", "prune", Options(sparsity=0.5)),
    ]


TARGETS = {
    ("digits", "dynamic-int8"): ("size_ratio", 3.5, 0.01, "at least 3.5x smaller, drop <= 1 point"),
    ("cnn", "dynamic-int8"): ("size_ratio", 3.5, 0.01, "at least 3.5x smaller, drop <= 1 point"),
    ("cnn", "static-int8"): (
        "throughput_speedup",
        1.5,
        0.01,
        "at least 1.5x samples/s at batch 32, drop <= 1 point",
    ),
    ("digits", "distill"): ("size_ratio", 0.0, 0.02, "a quarter of the width, within 2 points"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short training and timing: a smoke run")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/ and results/ alone")
    args = parser.parse_args()
    timing = (
        Timing(latency_runs=40, throughput_batches=8)
        if args.quick
        else Timing(latency_runs=1000, throughput_batches=60, rounds=6)
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as tmp:
        out = Path(tmp)
        registry = prepare(out, args.quick)
        for model, method, options in runs(out):
            started = time.perf_counter()
            data = out / ("digits-test.npz" if model == "digits" else "cnn-test.npz")
            outcome = optimize(
                registry, f"{model}:1", method, data, options=options, timing=timing, force=True
            )
            doc = outcome.report.to_dict()
            row = {
                "model": model,
                "method": method,
                "options": {k: v for k, v in outcome.candidate.options.items() if v is not None},
                "gate": outcome.verdict.status,
                "seconds": round(time.perf_counter() - started, 1),
                **{k: doc[k] for k in ("parent", "candidate", "change", "outputs", "threads")},
            }
            target = TARGETS.get((model, method))
            if target:
                figure, least, drop, text = target
                row["target"] = text
                row["target_met"] = bool(doc["change"][figure] >= least and doc["change"]["drop"] <= drop)
            rows.append(row)
            print(line(row), flush=True)
        registry.close()
    result = {"machine": machine(), "timing": timing.__dict__, "rows": rows}
    print(table(result))
    if not args.no_write:
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        write_doc(table(result))


def line(row: dict) -> str:
    c = row["change"]
    return (
        f"{row['model']:7} {row['method']:13} {c['size_ratio']:5.2f}x smaller  "
        f"{c['throughput_speedup']:5.2f}x samples/s  drop {c['drop']:+.4f}  ({row['seconds']} s)"
    )


def machine() -> dict:
    import onnxruntime

    return {
        "cpu": cpu(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }


def table(result: dict) -> str:
    m = result["machine"]
    head = (
        f"Measured by `python bench/optimize.py` on {m['cpu']} ({m['cores']} cores), ONNX Runtime {m['onnxruntime']}, "
        f"{result['rows'][0]['threads']} threads; latency at batch 1, samples/s at batch 32; accuracy on the held-out "
        f"test split (450 digits). Each ratio compares a candidate with its parent timed in the same "
        f"run, in alternating rounds; the parent row shows the parent as timed beside the first "
        f"method, and absolute timings vary between runs on this shared machine.\n\n"
        "| model | method | options | size | smaller | params | sparsity | p50 ms | p99 ms | samples/s | faster (b32) | accuracy | change | max / mean abs diff | gate (1 pt) | target |\n"
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |\n"
    )
    lines = []
    seen = set()
    for row in result["rows"]:
        p, c, ch, o = row["parent"], row["candidate"], row["change"], row["outputs"]
        if row["model"] not in seen:
            seen.add(row["model"])
            lines.append(
                f"| {row['model']} | fp32 (parent) | | {p['size_bytes'] / 1024:,.1f} KiB | | {p['parameters']:,} | {p['sparsity']:.0%} | "
                f"{p['p50_ms']:.3f} | {p['p99_ms']:.3f} | {p['samples_per_s']:,.0f} | | {p['metric']:.4f} | | | | |"
            )
        options = ", ".join(
            f"{k}={v}"
            for k, v in row["options"].items()
            if k not in ("train", "calibration", "torch_model", "seed", "train_rows")
        )
        target = (
            ""
            if "target" not in row
            else ("met" if row["target_met"] else "**missed**") + f": {row['target']}"
        )
        lines.append(
            f"| {row['model']} | {row['method']} | {options} | {c['size_bytes'] / 1024:,.1f} KiB | {ch['size_ratio']:.2f}x | {c['parameters']:,} | "
            f"{c['sparsity']:.0%} | {c['p50_ms']:.3f} | {c['p99_ms']:.3f} | {c['samples_per_s']:,.0f} | {ch['throughput_speedup']:.2f}x | "
            f"{c['metric']:.4f} | {ch['metric'] * 100:+.2f} pt | {o['max_abs_diff']:.3g} / {o['mean_abs_diff']:.3g} | {row['gate']} | {target} |"
        )
    return head + "\n".join(lines) + "\n"


def write_doc(text: str) -> None:
    start, end = "<!-- results: written by bench/optimize.py -->", "<!-- /results -->"
    doc = DOC.read_text()
    before, rest = doc.split(start, 1)
    _, after = rest.split(end, 1)
    DOC.write_text(f"{before}{start}\n{text}{end}{after}")


if __name__ == "__main__":
    main()
