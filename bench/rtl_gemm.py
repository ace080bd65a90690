"""RTL GEMM efficiency on the default preset: cycles against the ideal MACs / (MACs per cycle).

Runs the 128x128x128 GEMM and the ResNet-18-shaped GEMMs (with bias, shift, clip, two virtual
threads; programs from ``sim/programs.py``) on the cycle-accurate RTL simulation (Verilator),
every result checked against the functional simulator, and prints per shape:

* ideal cycles (MACs / MACs-per-cycle) and measured cycles;
* whole-program efficiency = ideal / measured (floor: 85 %);
* GEMM-phase efficiency = GEMM micro-ops / cycles the compute module was busy and not stalled
  on a token or its DMA port (floor: 95 %). This is the MAC array's issue rate while it has
  work and operands, measured by the hardware's own counters.

Usage: python bench/rtl_gemm.py [--config PRESET] [--latency N] [--quick]
"""

import argparse
import time

import numpy as np

from pyvta.hw.config import load_config
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import gemm_program
from pyvta.sim.rtl import RtlJob, RtlSimulator

SHAPES = [(128, 128, 128), (3136, 576, 64), (784, 1152, 128), (196, 2304, 256),
          (49, 4608, 512)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="pynq-z1")
    ap.add_argument("--latency", type=int, default=20, help="DRAM latency in cycles")
    ap.add_argument("--quick", action="store_true", help="only the 128^3 GEMM")
    args = ap.parse_args()
    cfg = load_config(args.config)
    rng = np.random.default_rng(0)
    shapes = SHAPES[:1] if args.quick else SHAPES
    progs, refs = [], []
    for m, k, n in shapes:
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        bias = rng.integers(-1 << 12, 1 << 12, n).astype(np.int32)
        p = gemm_program(cfg, a, w, bias=bias, shift=8, clip=(0, 127), threads=2)
        d = Dram(base=p.dram.base, data=p.dram.tobytes())
        t0 = time.perf_counter()
        FunctionalSimulator(cfg, d).run(p.encode())
        refs.append((d.tobytes(), time.perf_counter() - t0))
        progs.append(p)
    sim = RtlSimulator(cfg, "verilator")
    sim.build()
    jobs = [RtlJob(p.encode(), p.dram.tobytes(), p.dram.base, latency=args.latency,
                   name=f"{p.m}x{p.k}x{p.n}") for p in progs]
    t0 = time.perf_counter()
    results = sim.run(jobs)
    wall = time.perf_counter() - t0
    print(f"# {cfg.name} {cfg.fingerprint}: RTL (Verilator) GEMM efficiency, DRAM latency "
          f"{args.latency} cycles, {cfg.macs_per_cycle} MACs/cycle")
    print(f"{'M x K x N':>16} {'ideal':>10} {'cycles':>10} {'whole':>7} {'gemm-phase':>10} "
          f"{'tiling':>14} {'fsim s':>7} {'match':>6}")
    total_cycles = 0
    for p, res, (ref, fsim_s) in zip(progs, results, refs):
        c = res.counters.counters
        ideal = p.macs / cfg.macs_per_cycle
        active = c["compute_busy"] - c["compute_token_stall"] - c["compute_dma_stall"]
        phase = c["gemm_uops"] / active if active > 0 else float("nan")
        t = p.tiling
        ok = res.dram == ref and not res.timeout and res.error == 0
        total_cycles += res.cycles
        print(f"{p.m:>5}x{p.k:>5}x{p.n:>4} {ideal:>10.0f} {res.cycles:>10} "
              f"{100 * ideal / res.cycles:>6.1f}% {100 * phase:>9.1f}% "
              f"{f'{t.mt}x{t.nt}x{t.kc}':>14} {fsim_s:>7.2f} {'yes' if ok else 'NO':>6}")
    print(f"# RTL wall time {wall:.1f} s for {total_cycles} cycles "
          f"({total_cycles / wall:,.0f} simulated cycles/s including start-up)")


if __name__ == "__main__":
    main()
