"""Build the demo model: a PyTorch MLP trained on scikit-learn's digits (8x8 images, 64 pixel values
from 0 to 16), saved as TorchScript with its labels, its dataset and a sample request. No downloads.

    python examples/digits/build.py [OUT_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import skops.io
import torch
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn


class DigitsMLP(nn.Module):
    """Raw pixel values in (0..16), class logits out; the scaling lives in the model."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 16.0)


Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

REVIEWS = {
    "positive": [
        "a great film",
        "loved every minute",
        "wonderful acting and a clever story",
        "superb, funny",
    ],
    "negative": ["a dull film", "hated every minute", "awful acting and a silly story", "boring, too long"],
}
"""Sentences for the demo's text model: a few words per class, enough to show text in, class out."""


def draw_seven() -> Image.Image:
    """A 7 drawn as a person draws it: dark ink on white, 64x64 (the recipe shrinks it to 8x8)."""
    picture = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(picture).line([(14, 12), (50, 12), (30, 56)], fill=0, width=7)
    return picture


def reviews() -> Any:
    """A scikit-learn text pipeline (TF-IDF, then logistic regression) on REVIEWS."""
    texts = [t for sentences in REVIEWS.values() for t in sentences]
    labels = [label for label, sentences in REVIEWS.items() for _ in sentences]
    return make_pipeline(TfidfVectorizer(), LogisticRegression(C=10.0)).fit(texts, labels)


def split(seed: int = 0) -> Split:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X.astype(np.float32), y, test_size=0.25, random_state=seed
    )
    return X_train, X_test, y_train, y_test


def train(data: Split, seed: int = 0, epochs: int = 60) -> tuple[DigitsMLP, float]:
    torch.manual_seed(seed)
    X_train, X_test, y_train, y_test = data
    model = DigitsMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    xs, ys = torch.from_numpy(X_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        for idx in torch.randperm(len(xs)).split(128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xs[idx]), ys[idx]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(X_test)).argmax(1).numpy() == y_test).mean())
    return model, accuracy


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = split()
    X_train, X_test, y_train, y_test = data
    model, accuracy = train(data)
    torch.jit.save(torch.jit.script(model), out / "digits.pt")
    (out / "labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    np.savez(out / "digits-train.npz", X=X_train, y=y_train)
    np.savez(out / "digits-test.npz", X=X_test, y=y_test)
    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    skops.io.dump(logreg, out / "logreg.skops")
    joblib.dump(logreg, out / "logreg.joblib")
    seven = X_test[np.flatnonzero(y_test == 7)[0]]
    (out / "seven.json").write_text(json.dumps({"input": seven.astype(int).tolist()}))
    # the same sample as a KServe v2 request, asking for the two most likely classes
    tensor = {"name": "input", "shape": [1, 64], "datatype": "FP32", "data": seven.astype(int).tolist()}
    v2 = {
        "id": "1",
        "inputs": [tensor],
        "outputs": [{"name": "logits", "parameters": {"classification": 2}}],
    }
    (out / "seven-v2.json").write_text(json.dumps(v2, separators=(",", ":")) + "\n")
    draw_seven().save(out / "seven.png")
    skops.io.dump(reviews(), out / "reviews.skops")
    print(f"built {out / 'digits.pt'}: test accuracy {accuracy:.3f}")
    print(f"built {out / 'logreg.skops'} and .joblib: test accuracy {logreg.score(X_test, y_test):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
