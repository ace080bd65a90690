"""Simulation speed of the full default-configuration design under cocotb + Verilator.

Runs one long program (a tiled GEMM, two virtual threads) on the RTL simulation and on the
functional simulator, and prints simulated cycles per second (floor: 100,000) next to the
functional simulator's wall time for the same program (and the RTL's cycle count divided by
that time, with the ratios). The session start-up (simulator
process, cocotb, DRAM image load) is measured separately with a FINISH-only program and
subtracted, and both figures are printed.

Usage: python bench/rtl_speed.py [--config PRESET] [--size M K N] [--simulator verilator]
"""

import argparse
import time

import numpy as np

from pyvta.compiler.builder import ProgramBuilder
from pyvta.hw.config import load_config
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import gemm_program
from pyvta.sim.rtl import RtlJob, RtlSimulator


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="pynq-z1")
    ap.add_argument("--size", type=int, nargs=3, default=(512, 512, 512), metavar=("M", "K", "N"))
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    args = ap.parse_args()
    cfg = load_config(args.config)
    m, k, n = args.size
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    p = gemm_program(cfg, a, w, bias=rng.integers(-999, 999, n).astype(np.int32), shift=8,
                     clip=(0, 127), threads=2)
    d = Dram(base=p.dram.base, data=p.dram.tobytes())
    t0 = time.perf_counter()
    FunctionalSimulator(cfg, d).run(p.encode())
    fsim_s = time.perf_counter() - t0

    sim = RtlSimulator(cfg, args.simulator)
    t0 = time.perf_counter()
    sim.build()
    build_s = time.perf_counter() - t0
    empty = ProgramBuilder(cfg, Dram(4096))
    empty.finish()
    t0 = time.perf_counter()
    sim.run([RtlJob(empty.encode(), empty.dram.tobytes())])
    startup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    (res,) = sim.run([RtlJob(p.encode(), p.dram.tobytes(), p.dram.base, latency=20)])
    rtl_s = time.perf_counter() - t0
    ok = res.dram == d.tobytes() and not res.timeout
    net = max(rtl_s - startup_s, 1e-9)
    print(f"# {cfg.name} {cfg.fingerprint}: {m}x{k}x{n} GEMM + bias/shift/clip, 2 threads, "
          f"{len(p.insns)} instructions; RTL result {'matches' if ok else 'DIFFERS FROM'} fsim")
    print(f"{'':28} {'RTL (' + args.simulator + ')':>18} {'fsim':>10} {'RTL/fsim':>9}")
    print(f"{'wall time, s':28} {rtl_s:>18.2f} {fsim_s:>10.3f} {rtl_s / fsim_s:>8.0f}x")
    print(f"{'simulated cycles':28} {res.cycles:>18,}")
    # fsim is not cycle-accurate: its figure is the RTL's cycle count over fsim's wall time.
    print(f"{'cycles/s incl. start-up':28} {res.cycles / rtl_s:>18,.0f} "
          f"{res.cycles / fsim_s:>10,.0f} {fsim_s / rtl_s:>8.3f}x")
    print(f"{'cycles/s excl. start-up':28} {res.cycles / net:>18,.0f} "
          f"{res.cycles / fsim_s:>10,.0f} {fsim_s / net:>8.3f}x   "
          f"(start-up {startup_s:.2f} s; floor 100,000)")
    print(f"{'build (cached if ~0), s':28} {build_s:>18.2f}")


if __name__ == "__main__":
    main()
