"""RTL core performance in the Amaranth simulator: GEMM micro-op rate and whole programs.

Figures (cycles of the RTL core, DRAM model answering at once, no stalls):

* ``large GEMM``: one GEMM instruction of many micro-ops (steady-state issue rate);
* ``GEMM chain``: consecutive GEMM instructions with no token between them (no bubble
  between instructions);
* ``tiled GEMM``: ``sim/programs.gemm_program`` (double-buffered, tokens, loads, ALU, stores),
  whole-program cycles against the GEMM work at one micro-op per cycle.

    python bench/hw_core_perf.py [preset]     # default: tiny (the Python simulator is slow)
"""

import argparse
import time

import numpy as np

from pyvta.compiler.builder import ProgramBuilder
from pyvta.hw.config import load_config
from pyvta.hw.core_tb import run_core
from pyvta.hw.isa import MemType
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import gemm_program


def _run(cfg, b, latency=0):
    prog = b.encode()
    addr = b.dram.put(np.frombuffer(prog, np.uint8), align=64)
    ref = Dram(data=b.dram.tobytes(), base=b.dram.base)
    FunctionalSimulator(cfg, ref).run(prog)
    t = time.time()
    run = run_core(cfg, b.dram, addr, len(prog) // 16, trace_gemm=True, max_cycles=2_000_000,
                   latency=latency)
    assert np.array_equal(ref.mem, b.dram.mem), "RTL result differs from fsim"
    return run, time.time() - t


def gemm_chain(cfg, n_insns, uops, iter_out, iter_in):
    """``n_insns`` GEMMs over ``uops`` micro-ops x iter_out x iter_in, back to back."""
    rng = np.random.default_rng(0)
    b = ProgramBuilder(cfg, Dram(4 << 20))
    n_inp = min(cfg.inp_depth, 64)
    n_wgt = min(cfg.wgt_depth, 16)
    inp = rng.integers(-128, 128, size=(n_inp, cfg.batch * cfg.block_in), dtype=np.int8)
    wgt = rng.integers(-128, 128, size=(n_wgt, cfg.block_out * cfg.block_in), dtype=np.int8)
    kernel = b.uop_kernel([(u % 32, u % n_inp, u % n_wgt) for u in range(uops)])
    g = b.load_uops(kernel)
    b.load(MemType.INP, 0, b.put(MemType.INP, inp), 1, n_inp)
    b.load(MemType.WGT, 0, b.put(MemType.WGT, wgt), 1, n_wgt, push_next_dep=True)
    b.sync("compute", pop_prev_dep=True)
    for t in range(n_insns):
        b.gemm(g, iter_out=iter_out, iter_in=iter_in, dst=(1, 2), src=(1, 0), wgt=(0, 1),
               push_next_dep=t == n_insns - 1)
    out = b.reserve(MemType.OUT, 32)
    b.store(0, out, 1, 32, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    return b


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", nargs="?", default="tiny")
    p.add_argument("--rows", type=int, default=64, help="M of the tiled GEMM, in BATCH rows")
    p.add_argument("--latency", type=int, default=0,
                   help="DRAM read latency in cycles (request to first beat) of the model")
    args = p.parse_args(argv)
    cfg = load_config(args.preset)
    print(f"RTL core {cfg.fingerprint}, Amaranth simulator, DRAM read latency {args.latency}")
    print(f"{'case':<34}{'GEMM uops':>10}{'cycles':>9}{'uops/cycle':>12}{'sim s':>7}")
    cases = [("large GEMM (1 insn, 16x8x4 uops)", gemm_chain(cfg, 1, 16, 8, 4), "window"),
             ("GEMM chain (16 insns of 8x2x2)", gemm_chain(cfg, 16, 8, 2, 2), "window")]
    rng = np.random.default_rng(1)
    m, k, n = args.rows * cfg.batch, 8 * cfg.block_in, 4 * cfg.block_out
    a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    w = rng.integers(-128, 128, size=(n, k), dtype=np.int8)
    gp = gemm_program(cfg, a, w, shift=8, threads=2)
    cases.append((f"tiled GEMM {m}x{k}x{n}, 2 threads", gp.builder, "program"))
    for name, b, kind in cases:
        run, secs = _run(cfg, b, args.latency)
        uops = run.counters["gemm_uops"]
        extra = ""
        if kind == "window":
            cycles = run.gemm_window[1] - run.gemm_window[0] + 1
        else:
            cycles = run.cycles
            t = gp.tiling
            extra = (f"   (gemm_program's model: {t.est_cycles} cycles, "
                     f"{t.est_efficiency:.3f}; RTL/model {cycles / t.est_cycles:.2f})")
        print(f"{name:<34}{uops:>10}{cycles:>9}{uops / cycles:>12.3f}{secs:>7.1f}{extra}")
    print("uops/cycle: 1.000 is the peak (BATCH x BLOCK_IN x BLOCK_OUT MACs per cycle); the "
          "tiled GEMM row is whole-program time including loads, ALU and stores.")


if __name__ == "__main__":
    main()
