"""Timing model vs RTL: estimated and measured cycles side by side, with the error.

Runs the benchmark programs on the cycle-accurate RTL simulation (``pyvta.sim.rtl``,
Verilator) and on the timing model (``pyvta.sim.timing.estimate_cycles``), at one or more
DRAM latencies:

* ``GEMM chain`` / ``large GEMM``: back-to-back GEMM instructions (``bench/hw_core_perf.py``);
* ``tiled GEMM MxKxN tT``: ``sim/programs.gemm_program`` (double-buffered loads, ALU passes,
  stores, tokens), the shapes of the GEMM benchmarks;
* ``random S``: ``sim/randprog.random_program(work=...)`` lockstep programs;
* ``lowered``: a small partition compiled by ``pyvta.compiler.lower`` (``bench/lower_rtl.py``);
* ``conformance``: VTA's conformance kernels (short programs: a fixed overhead of a few
  cycles is a large fraction of them, and the 5 % target only applies above 10,000 cycles).

    python bench/timing_accuracy.py [--preset tiny] [--latency 8 30] [--quick] [--resnet18]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyvta.hw.config import load_config  # noqa: E402
from pyvta.sim.programs import conformance_suite, gemm_program  # noqa: E402
from pyvta.sim.randprog import random_program  # noqa: E402
from pyvta.sim.timing import estimate_cycles  # noqa: E402

#: The 5 % target applies to programs longer than this many cycles.
LONG_PROGRAM = 10_000


def benchmark_programs(cfg, quick: bool = False):
    """``(name, insn bytes, dram bytes, dram base)`` of every benchmark program."""
    from hw_core_perf import gemm_chain
    out = []
    for name, b in (("large GEMM (1 insn, 16x8x4 uops)", gemm_chain(cfg, 1, 16, 8, 4)),
                    ("GEMM chain (16 insns of 8x2x2)", gemm_chain(cfg, 16, 8, 2, 2))):
        out.append((name, b.encode(), b.dram.tobytes(), b.dram.base))
    rng = np.random.default_rng(1)
    shapes = [(64 * cfg.batch, 8 * cfg.block_in, 4 * cfg.block_out, 2),
              (128, 128, 128, 2), (128, 128, 128, 1), (49, 200, 70, 2)]
    if not quick:
        shapes += [(256, 128, 64, 2), (100, 64, 48, 1)]
    for m, k, n, t in shapes:
        a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
        w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
        bias = rng.integers(-3000, 3000, n).astype(np.int32)
        p = gemm_program(cfg, a, w, bias=bias, shift=8, threads=t)
        out.append((f"tiled GEMM {m}x{k}x{n} t{t}", p.encode(), p.dram.tobytes(),
                    p.dram.base))
    for seed in range(3 if quick else 6):
        rp = random_program(cfg, seed, work=20_000)
        out.append((f"random {seed} (work 20000)", rp.encode(), rp.dram.tobytes(),
                    rp.dram.base))
    if not quick:
        out.append(lowered_partition(cfg))
        for name, b in conformance_suite(cfg, large=False):
            out.append((f"conformance {name}", b.encode(), b.dram.tobytes(), b.dram.base))
    return out


def lowered_partition(cfg):
    """The compiler's output for a small partition (``bench/lower_rtl.small_partition``:
    3x3 convolution + ReLU, 3x3/2 max pooling, residual add) with random inputs."""
    from lower_rtl import small_partition
    rng = np.random.default_rng(0)
    prog, feeds = small_partition(cfg, rng)
    img = prog.image(cfg, feeds)
    return ("lowered conv3x3+maxpool+add (compiler)", prog.relocated_insns(0, cfg),
            img.tobytes(), 0)


def resnet18_partition(cfg):
    """The first accelerator partition of ResNet-18 as the compiler lowers it (about 16,000
    instructions and 10 million cycles on pynq-z1; a larger DRAM model, so a longer build)."""
    from resnet18 import compile_resnet18
    rng = np.random.default_rng(0)
    _, _, progs, _ = compile_resnet18(cfg, "per-channel")
    prog = progs[0][1]
    img = prog.image(cfg, {p.name: rng.integers(-128, 128, p.shape, dtype=np.int8)
                           for p in prog.inputs})
    return ("ResNet-18 partition 0 (compiler)", prog.relocated_insns(0, cfg), img.tobytes(), 0)


def compare(cfg, programs, latencies, simulator="verilator"):
    """Run every program at every latency; returns rows (name, latency, rtl, model, error)."""
    from pyvta.sim.rtl import RtlJob, RtlSimulator
    jobs = [RtlJob(insn, dram, base, latency=lat, name=name)
            for lat in latencies for name, insn, dram, base in programs]
    results = RtlSimulator(cfg, simulator).run(jobs)
    rows = []
    for job, res in zip(jobs, results):
        if res.timeout or res.error:
            raise RuntimeError(f"{job.name}: the RTL did not finish cleanly "
                               f"(timeout={res.timeout}, ERROR={res.error:#x})")
        est = estimate_cycles(cfg, job.insn, dram_latency=job.latency,
                              dram=(job.dram, job.dram_base)).cycles
        rows.append((job.name, job.latency, res.cycles, est, est / res.cycles - 1))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--latency", type=int, nargs="+", default=[8, 30],
                   help="DRAM latencies in cycles (default: 8 30)")
    p.add_argument("--quick", action="store_true", help="fewer programs")
    p.add_argument("--resnet18", action="store_true",
                   help="also ResNet-18's first partition (several minutes)")
    args = p.parse_args(argv)
    cfg = load_config(args.preset)
    t = time.perf_counter()
    programs = benchmark_programs(cfg, args.quick)
    if args.resnet18:
        programs.append(resnet18_partition(cfg))
    rows = compare(cfg, programs, args.latency)
    secs = time.perf_counter() - t
    print(f"timing model vs RTL (Verilator), {cfg.fingerprint}, {secs:.0f} s")
    print(f"{'program':<46}{'lat':>4}{'RTL':>10}{'model':>10}{'model/RTL':>10}{'error':>8}")
    worst_long = worst_all = 0.0
    for name, lat, rtl, est, err in rows:
        mark = "" if rtl > LONG_PROGRAM else "  (short)"
        print(f"{name:<46}{lat:>4}{rtl:>10}{est:>10}{est / rtl:>10.3f}{err * 100:>7.1f}%{mark}")
        worst_all = max(worst_all, abs(err))
        if rtl > LONG_PROGRAM:
            worst_long = max(worst_long, abs(err))
    print(f"largest |error|: {worst_long * 100:.1f} % on programs over {LONG_PROGRAM} cycles, "
          f"{worst_all * 100:.1f} % on all")


if __name__ == "__main__":
    main()
