"""Lowered programs on the cycle-accurate RTL simulator: bit-exactness and cycles vs the model.

``python bench/lower_rtl.py`` lowers a small partition (3x3 convolution with ReLU and
pre-shift requantization -> 3x3/2 max pooling -> residual add with large multipliers) for the
preset, runs it on ``pyvta.sim.rtl`` (Verilator), checks every output bit for bit against the
qops references, and prints the RTL cycle count next to the cost model's estimate.
``--resnet18`` does the same with the whole first partition of ResNet-18 (30 operators; needs
a larger DRAM model, hence a longer first build).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyvta.compiler import qops  # noqa: E402
from pyvta.compiler.lower import AccelOp, lower  # noqa: E402
from pyvta.hw.config import load_config  # noqa: E402


def small_partition(cfg, rng):
    x = rng.integers(-128, 128, (1, 64, 14, 14), dtype=np.int8)
    q = qops.QConv2d(rng.integers(-128, 128, (64, 64, 3, 3), dtype=np.int8),
                     rng.integers(-9000, 9000, 64).astype(np.int32),
                     qops.Requant(rng.integers(1, 3000, 64).astype(np.int32), 13, 6, 0, 127),
                     (1, 1), (1, 1, 1, 1))
    ops = [AccelOp("conv", q, ["x"], "y", [x.shape], (1, 64, 14, 14)),
           AccelOp("mp", qops.QMaxPool((3, 3), (2, 2), (1, 1, 1, 1)), ["y"], "z",
                   [(1, 64, 14, 14)], (1, 64, 7, 7)),
           AccelOp("add", qops.QAdd(3000, -7000, 14), ["z", "z"], "w", [(1, 64, 7, 7)] * 2,
                   (1, 64, 7, 7))]
    return lower(cfg, ops, ["x"], ["w", "y"], {"x": x.shape}), {"x": x}


def run_on_rtl(cfg, prog, feeds, simulator="verilator"):
    """Region at DRAM address 0; returns ({output: array}, cycles, counters, seconds)."""
    from pyvta.sim.rtl import run_rtl_raw
    img = prog.image(cfg, feeds)
    t = time.perf_counter()
    dram, info = run_rtl_raw(cfg, prog.relocated_insns(0, cfg), img.tobytes(),
                             simulator=simulator)
    dt = time.perf_counter() - t
    dram = np.frombuffer(dram, np.uint8)
    outs = {p.name: p.unpack(dram[p.offset:p.offset + p.nbytes(cfg)].tobytes(), cfg)
            for p in prog.outputs}
    return outs, info["cycles"], info["counters"], dt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="pynq-z1")
    ap.add_argument("--resnet18", action="store_true")
    ap.add_argument("--simulator", default="verilator")
    args = ap.parse_args(argv)
    cfg = load_config(args.preset)
    rng = np.random.default_rng(0)
    if args.resnet18:
        from resnet18 import compile_resnet18
        _, _, progs, _ = compile_resnet18(args.preset, "per-channel")
        prog = progs[0][1]
        feeds = {p.name: rng.integers(-128, 128, p.shape, dtype=np.int8) for p in prog.inputs}
    else:
        prog, feeds = small_partition(cfg, rng)
    outs, cycles, counters, dt = run_on_rtl(cfg, prog, feeds, args.simulator)
    vals = dict(feeds)
    for op in prog.ops:
        vals[op.output] = op.reference(*[vals[n] for n in op.inputs])
    exact = all(np.array_equal(outs[n], vals[n]) for n in outs)
    model = prog.info["__total__"]["cycles"]
    print(f"{len(prog.ops)} operators, {prog.num_insns} instructions, preset {args.preset}")
    print(f"bit-exact vs qops references: {exact}")
    print(f"RTL cycles {cycles}   cost model {model}   model/RTL {model / cycles:.3f}   "
          f"(RTL run {dt:.1f} s incl. any build)")
    print(f"RTL counters: {counters}")
    return 0 if exact else 1


if __name__ == "__main__":
    sys.exit(main())
