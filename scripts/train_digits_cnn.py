"""Train the small digits CNN shipped as labcim/network/data/digits_cnn.npz (needs torch).

conv 3x3x8 (pad 1) -> relu -> maxpool 2 -> conv 3x3x16 (pad 1) -> relu -> avgpool 2 ->
flatten -> dense 10, on the scikit-learn digits with the split of
:func:`labcim.network.tasks.digits_split`.  Deterministic on CPU (fixed seeds, one
thread).  The network is converted with :func:`labcim.network.loaders.from_torch`,
checked against PyTorch's own output, and written with
:func:`labcim.network.loaders.save_npz`, so the shipped file needs no torch.

Usage: python scripts/train_digits_cnn.py [output.npz]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from labcim.network.loaders import from_torch, save_npz
from labcim.network.tasks import CNN_WEIGHTS, digits_split

OUT = Path(__file__).resolve().parents[1] / "labcim" / "network" / "data" / CNN_WEIGHTS


def build() -> nn.Sequential:
    """The architecture; its im2col matrices (9x8, 72x16, 64x10) each fit one core."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def main(out: Path = OUT) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    X_tr, X_te, y_tr, y_te = digits_split(images=True)
    to_t = lambda x: torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float32)  # noqa: E731
    xt, yt = to_t(X_tr), torch.tensor(y_tr)
    net = build()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    model = from_torch(net, (1, 8, 8))
    with torch.no_grad():
        ref = net(to_t(X_te)).double().numpy()
    np.testing.assert_allclose(model.forward(X_te), ref, rtol=1e-4, atol=1e-4)
    acc = 100 * np.mean(ref.argmax(axis=1) == y_te)
    save_npz(model, out)
    print(f"{out}: test accuracy {acc:.2f} %, {out.stat().st_size} bytes")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
