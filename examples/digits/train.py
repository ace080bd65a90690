"""Train the bundled digits CNN and export ``digits.onnx``, ``calib.npz`` and ``test.npz``.

The data is scikit-learn's 8x8 handwritten digits (1,797 images, offline). The network is small
enough to train in seconds on a CPU and exercises every accelerator operator class:
conv-relu, conv-relu, maxpool, conv-relu, conv + residual add + relu, global average pool and a
dense classifier.

Needs torch (training only; pyvta itself does not): ``pip install torch``.
Run from anywhere: ``python examples/digits/train.py`` (about 20 s).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def load_split(seed: int = 0):
    """Digits as float32 (N, 1, 8, 8) in [0, 1], split 70/30 stratified (train, test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)


def build_model():
    import torch
    from torch import nn

    class DigitsNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(16)
            self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
            self.conv4 = nn.Conv2d(32, 32, 3, padding=1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            x = torch.relu(self.bn1(self.conv1(x)))
            x = torch.relu(self.conv2(x))
            x = self.pool(x)
            x = torch.relu(self.conv3(x))
            x = torch.relu(self.conv4(x) + x)          # residual
            x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return self.fc(x)

    return DigitsNet()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--calib-samples", type=int, default=200)
    p.add_argument("--out", default=str(HERE))
    args = p.parse_args(argv)
    import torch
    torch.manual_seed(0)
    np.random.seed(0)
    xtr, xte, ytr, yte = load_split()
    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
    print(f"float test accuracy (torch): {100 * acc:.2f}% on {len(yte)} images")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Static batch 1: the deployment shape, so `pyvta compile` needs no --input-shape.
    torch.onnx.export(model, torch.zeros(1, 1, 8, 8), str(out / "digits.onnx"),
                      input_names=["x"], output_names=["logits"], opset_version=17,
                      dynamo=False)
    rng = np.random.default_rng(0)
    calib = xtr[rng.choice(len(xtr), args.calib_samples, replace=False)]
    np.savez_compressed(out / "calib.npz", x=calib)
    np.savez_compressed(out / "test.npz", x=xte, y=yte)
    print(f"wrote {out / 'digits.onnx'}, calib.npz ({len(calib)} samples from the training "
          f"split), test.npz ({len(xte)} held-out samples)")


if __name__ == "__main__":
    main()
