"""Core-level RTL tests: programs run on the Amaranth core and on the functional simulator
from the same DRAM image; the final images must be equal byte for byte."""

import numpy as np
import pytest

from pyvta.compiler.builder import ProgramBuilder
from pyvta.hw.config import load_config
from pyvta.hw.core_tb import run_core
from pyvta.hw.isa import AluOp, MemType
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator

TINY = load_config("tiny")


def _builder(cfg=TINY, size=1 << 16):
    return ProgramBuilder(cfg, Dram(size))


def run_both(b: ProgramBuilder, stall=0.0, seed=0):
    """Run the builder's program on fsim and on the RTL core; assert equal DRAM images."""
    prog = b.encode()
    addr = b.dram.put(np.frombuffer(prog, np.uint8), align=64)
    ref = Dram(data=b.dram.tobytes(), base=b.dram.base)
    FunctionalSimulator(b.cfg, ref).run(prog)
    run = run_core(b.cfg, b.dram, addr, len(prog) // 16, stall=stall, seed=seed)
    diff = np.flatnonzero(ref.mem != b.dram.mem)
    assert diff.size == 0, (f"DRAM differs at {diff.size} bytes, first at {diff[0]:#x}: "
                            f"rtl={b.dram.mem[diff[:8]]} fsim={ref.mem[diff[:8]]}")
    assert run.error == 0
    return run


def alu_program(b, op, imm=None, rng=None, n=4):
    """LOAD ACC n tiles, ALU op over them (imm or tensor acc[i+n]), STORE n tiles."""
    cfg = b.cfg
    rng = rng or np.random.default_rng(0)
    lanes = cfg.batch * cfg.block_out
    acc = rng.integers(-300, 300, size=(2 * n, lanes), dtype=np.int32)
    if op is AluOp.SHR and imm is None:
        acc[n:] = rng.integers(-40, 40, size=(n, lanes))
    acc_addr = b.put(MemType.ACC, acc)
    out_addr = b.reserve(MemType.OUT, n)
    kernel = b.uop_kernel([(i, i + n, 0) for i in range(n)])
    b.load_uops(kernel)
    b.load(MemType.ACC, 0, acc_addr, 1, 2 * n)
    b.alu(op, (0, n), imm=imm, push_next_dep=True)
    b.store(0, out_addr, 1, n, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    return out_addr


@pytest.mark.parametrize("op,imm", [(AluOp.ADD, 7), (AluOp.MAX, None), (AluOp.SHR, 3),
                                    (AluOp.SHR, -2), (AluOp.SHR, None), (AluOp.MUL, -3),
                                    (AluOp.MIN, None)])
def test_alu_program(op, imm):
    b = _builder()
    alu_program(b, op, imm)
    run_both(b)


def gemm_program(b, rng, m=2, k=2, n=2, virtual_threads=False):
    """C[m, n] = A[m, k] @ W[n, k]^T in tiles, then >> 4, clip to [-128, 127], store."""
    cfg = b.cfg
    bi, bo = cfg.block_in, cfg.block_out
    a = rng.integers(-128, 128, size=(m, k, cfg.batch, bi), dtype=np.int8)
    w = rng.integers(-128, 128, size=(n, k, bo, bi), dtype=np.int8)
    a_addr = b.put(MemType.INP, a)
    w_addr = b.put(MemType.WGT, w)
    out_addr = b.reserve(MemType.OUT, m * n)
    # GEMM uop: dst = acc[i*n + j], src = inp[i*k + kk], wgt = wgt[j*k + kk]
    # loop: outer i (m), inner kk (k), uops over j (n).
    gk = b.uop_kernel([(j, 0, j * k) for j in range(n)])
    rk = b.uop_kernel([(j, 0, 0) for j in range(n)])
    ak = b.uop_kernel([(j, 0, 0) for j in range(m * n)])
    g = b.load_uops(gk, 0)
    r = b.load_uops(rk, len(gk))
    al = b.load_uops(ak, len(gk) + len(rk))
    b.load(MemType.INP, 0, a_addr, 1, m * k)
    b.load(MemType.WGT, 0, w_addr, 1, n * k, push_next_dep=True)
    b.gemm(r, iter_out=m, dst=(n, 0), reset=True)
    b.gemm(g, iter_out=m, iter_in=k, dst=(n, 0), src=(k, 1), wgt=(0, 1), pop_prev_dep=True)
    b.alu(AluOp.SHR, al, imm=4)
    b.alu(AluOp.MIN, al, imm=127)
    b.alu(AluOp.MAX, al, imm=-128, push_next_dep=True)
    b.store(0, out_addr, 1, m * n, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    return a, w, out_addr


def test_gemm_program():
    b = _builder()
    a, w, out_addr = gemm_program(b, np.random.default_rng(1))
    run = run_both(b)
    assert run.counters["gemm_uops"] == 2 * 2 + 2 * 2 * 2
    # Independent check of the math (not only fsim equality).
    res = np.einsum("mkbi,nkoi->mnbo", a.astype(np.int64), w.astype(np.int64))
    exp = np.clip(res >> 4, -128, 127).astype(np.int8).reshape(-1)
    got = b.read(MemType.OUT, out_addr, 4)
    assert np.array_equal(got, exp)
