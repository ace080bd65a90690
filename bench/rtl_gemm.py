"""RTL GEMM efficiency on the default preset: cycles against the ideal MACs / (MACs per cycle).

Runs the 128x128x128 GEMM and the ResNet-18-shaped GEMMs (with bias, shift, clip, two virtual
threads; programs from ``sim/programs.py``) on the cycle-accurate RTL simulation (Verilator).
Each program is also run in VTA's phase-timing variants (``phase_program``: the other
instructions become token-only syncs with the same dependency flags): without its ALU
epilogue, with only its GEMMs, only its ALU, only INP loads, only WGT loads, only OUT stores.
Every run, variants included, is checked against the functional simulator on the same
instructions (DRAM image and micro-op counts). Printed per shape:

* ideal cycles = the user's MACs (M*K*N, padded to whole blocks) / MACs-per-cycle; a bias
  folded into the GEMM as an extra reduction block (``--bias-mode gemm``) is overhead, not
  work. The default ``--bias-mode alu`` adds the bias on the ALU lane, beside the GEMMs;
* whole-program efficiency = ideal / cycles of the full program (floor: 85 %);
* GEMM-only efficiency = ideal / cycles of the GEMM-only variant (floor: 95 %);
* compute-busy utilisation = GEMM micro-ops / cycles the compute module was busy and not
  stalled (the core's counters; GEMM micro-ops include the resets, which run in the ALU
  lane, so with two lanes this can exceed 100 %: shown only for comparison);
* the plan: ``resident`` (``sim/gemm_resident.py``: operands loaded once) or the tiled plan's
  ``mt x nt x kc``;
* the cycles of each variant, and the lane bound: ideal / max(GEMM-only, ALU-only cycles).
  The compute module has two lanes (GEMMs in lane G; ALU passes and resets in lane A, on
  the other ACC bank), so a tile's ALU epilogue overlaps the next tile's GEMMs and the whole
  program is bound by the busier lane plus the first loads and the last tile's epilogue and
  store (see ``sim/programs.gemm_program``).

Usage: python bench/rtl_gemm.py [--config PRESET] [--latency N] [--quick] [--bias-mode alu|gemm]
"""

import argparse
import time

import numpy as np

from pyvta.hw.config import load_config
from pyvta.hw.isa import encode_program
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import PHASES, gemm_program, phase_program
from pyvta.sim.rtl import RtlJob, RtlSimulator

SHAPES = [(128, 128, 128), (3136, 576, 64), (784, 1152, 128), (196, 2304, 256),
          (49, 4608, 512)]
#: Variant name -> phases kept (VTA's benchmark: full, skip ALU, GEMM only, ALU only, ...).
VARIANTS = {"whole": PHASES, "no-alu": ("inp", "wgt", "gemm", "out"), "gemm": ("gemm",),
            "alu": ("alu",), "inp": ("inp",), "wgt": ("wgt",), "out": ("out",)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="pynq-z1")
    ap.add_argument("--latency", type=int, default=20, help="DRAM latency in cycles")
    ap.add_argument("--quick", action="store_true", help="only the 128^3 GEMM")
    ap.add_argument("--bias-mode", choices=("alu", "gemm"), default="alu",
                    help="bias ADD on the ALU lane (default) or folded into the GEMM")
    args = ap.parse_args()
    cfg = load_config(args.config)
    rng = np.random.default_rng(0)
    shapes = SHAPES[:1] if args.quick else SHAPES
    progs, jobs, refs = [], [], []
    fsim_s = {}
    for m, k, n in shapes:
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        bias = rng.integers(-1 << 12, 1 << 12, n).astype(np.int32)
        p = gemm_program(cfg, a, w, bias=bias, shift=8, clip=(0, 127), threads=2,
                         bias_mode=args.bias_mode)
        progs.append(p)
        image = p.dram.tobytes()
        for variant, keep in VARIANTS.items():
            insn = encode_program(phase_program(p.insns, keep), cfg)
            d = Dram(base=p.dram.base, data=image)
            t0 = time.perf_counter()
            counters = FunctionalSimulator(cfg, d).run(insn)
            if variant == "whole":
                fsim_s[len(progs) - 1] = time.perf_counter() - t0
            refs.append((d.tobytes(), counters))
            jobs.append(RtlJob(insn, image, p.dram.base, latency=args.latency,
                               name=f"{m}x{k}x{n}/{variant}"))
    sim = RtlSimulator(cfg, "verilator")
    sim.build()
    t0 = time.perf_counter()
    results = sim.run(jobs)
    wall = time.perf_counter() - t0
    bad = []
    for j, (job, res, (ref, counters)) in enumerate(zip(jobs, results, refs)):
        c = res.counters.counters
        got, want = np.frombuffer(res.dram, np.uint8).copy(), np.frombuffer(ref, np.uint8).copy()
        if "gemm" not in list(VARIANTS.values())[j % len(VARIANTS)]:
            # Without GEMMs a STORE writes whatever the accumulators held (the RTL keeps them
            # from the previous run, fsim starts from zeros): compare everything else.
            p = progs[j // len(VARIANTS)]
            for addr, nbytes in p.written:
                got[addr - p.dram.base:addr - p.dram.base + nbytes] = 0
                want[addr - p.dram.base:addr - p.dram.base + nbytes] = 0
        if (not np.array_equal(got, want) or res.timeout or res.error
                or c["gemm_uops"] != counters.gemm_uops or c["alu_uops"] != counters.alu_uops):
            bad.append(job.name)
    nv = len(VARIANTS)
    print(f"# {cfg.name} {cfg.fingerprint}: RTL (Verilator) GEMM efficiency, DRAM latency "
          f"{args.latency} cycles, {cfg.macs_per_cycle} MACs/cycle; every run (variants "
          f"included) {'matches fsim' if not bad else 'MISMATCHES fsim: ' + ', '.join(bad)}")
    print(f"{'M x K x N':>16} {'ideal':>8} {'cycles':>8} {'whole':>6} {'gemm-only':>16} "
          f"{'busy-util':>9} {'lane bound':>12} {'tiling':>10} {'fsim s':>6}")
    total_cycles = 0
    rows = []
    for i, p in enumerate(progs):
        res = dict(zip(VARIANTS, results[i * nv:(i + 1) * nv]))
        cyc = {v: r.cycles for v, r in res.items()}
        total_cycles += sum(cyc.values())
        c = res["whole"].counters.counters
        ideal = p.tiling.ideal_cycles  # the user's GEMM alone
        active = c["compute_busy"] - c["compute_token_stall"] - c["compute_dma_stall"]
        util = c["gemm_uops"] / active if active > 0 else float("nan")
        bound = ideal / max(cyc["gemm"], cyc["alu"])
        t = p.tiling
        plan = "resident" if t.order == "resident" else f"{t.mt}x{t.nt}x{t.kc}"
        print(f"{p.m:>5}x{p.k:>5}x{p.n:>4} {ideal:>8.0f} {cyc['whole']:>8} "
              f"{100 * ideal / cyc['whole']:>5.1f}% {cyc['gemm']:>8} {100 * ideal / cyc['gemm']:>6.1f}% "
              f"{100 * util:>8.1f}% {100 * bound:>11.1f}% {plan:>10} "
              f"{fsim_s[i]:>6.2f}")
        rows.append((p, cyc, c))
    print("\n# cycles of each variant (VTA's breakdown); ratio = variant / whole program")
    print(f"{'M x K x N':>16} " + " ".join(f"{v:>15}" for v in VARIANTS))
    for p, cyc, _ in rows:
        cells = [f"{cyc[v]:>8} {100 * cyc[v] / cyc['whole']:>5.1f}%" for v in VARIANTS]
        print(f"{p.m:>5}x{p.k:>5}x{p.n:>4} " + " ".join(cells))
    print("\n# where the cycles beyond the GEMM-only run go: lane G (GEMMs) idle at the start")
    print("# (first loads), the last tile's ALU passes and store after the last GEMM, and the")
    print("# ALU lane's work (resets + passes), which overlaps the GEMMs of the other ACC bank")
    for p, cyc, c in rows:
        elems = -(-p.m // cfg.batch) * -(-p.n // cfg.block_out)
        passes = c["alu_uops"] / elems
        print(f"#   {p.m}x{p.k}x{p.n}: whole - GEMM-only = {cyc['whole'] - cyc['gemm']} cycles; "
              f"ALU lane {elems} resets + {passes:.0f} passes x {elems} elements "
              f"({cyc['alu']} cycles ALU-only) beside {c['gemm_uops'] - elems} GEMM micro-ops")
    print(f"# RTL wall time {wall:.1f} s for {total_cycles:,} cycles "
          f"({total_cycles / wall:,.0f} simulated cycles/s including start-up)")


if __name__ == "__main__":
    main()
