"""Build the demo model: a PyTorch MLP trained on scikit-learn's digits (8x8 images, 64 pixel values
from 0 to 16), saved as TorchScript with its labels, its dataset and a sample request. No downloads.

    python examples/digits/build.py [OUT_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn


class DigitsMLP(nn.Module):
    """Raw pixel values in (0..16), class logits out; the scaling lives in the model."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x / 16.0)


def train(seed: int = 0, epochs: int = 60) -> tuple[DigitsMLP, np.ndarray, np.ndarray, float]:
    torch.manual_seed(seed)
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=seed)
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
    return model, X_test, y_test, accuracy


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model, X_test, y_test, accuracy = train()
    torch.jit.save(torch.jit.script(model), out / "digits.pt")
    (out / "labels.txt").write_text("\n".join(str(i) for i in range(10)) + "\n")
    np.savez(out / "digits-test.npz", X=X_test, y=y_test)
    seven = X_test[np.flatnonzero(y_test == 7)[0]]
    (out / "seven.json").write_text(json.dumps({"input": seven.astype(int).tolist()}))
    print(f"built {out / 'digits.pt'}: test accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out")
