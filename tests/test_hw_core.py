"""Core-level RTL tests: programs run on the Amaranth core and on the functional simulator
from the same DRAM image; the final images must be equal byte for byte."""

import numpy as np
import pytest

from pyvta.compiler.builder import ProgramBuilder
from pyvta.hw.config import load_config
from pyvta.hw.core import Core
from pyvta.hw.core_tb import run_core
from pyvta.hw.isa import AluOp, MemType
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator

TINY = load_config("tiny")


def _builder(cfg=TINY, size=1 << 16):
    return ProgramBuilder(cfg, Dram(size))


def run_both(b: ProgramBuilder, stall=0.0, seed=0, ports=None):
    """Run the builder's program on fsim and on the RTL core; assert equal DRAM images."""
    prog = b.encode()
    addr = b.dram.put(np.frombuffer(prog, np.uint8), align=64)
    ref = Dram(data=b.dram.tobytes(), base=b.dram.base)
    FunctionalSimulator(b.cfg, ref).run(prog)
    run = run_core(b.cfg, b.dram, addr, len(prog) // 16, stall=stall, seed=seed,
                   core=Core(b.cfg, acc_read_ports=ports))
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
@pytest.mark.parametrize("ports", [1, 2], ids=["1port", "2ports"])
def test_alu_program(op, imm, ports):
    b = _builder()
    alu_program(b, op, imm)
    run = run_both(b, ports=ports)
    assert run.counters["alu_uops"] == 4


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


def test_gemm_program_with_stalls():
    b = _builder()
    gemm_program(b, np.random.default_rng(2), m=2, k=3, n=2)
    run_both(b, stall=0.4, seed=7)


def _identity_wgt(b):
    cfg = b.cfg
    eye = np.eye(cfg.block_out, cfg.block_in, dtype=np.int8)[None]
    return b.put(MemType.WGT, eye)


def test_padded_inp_load():
    """Padding on every side, with a row stride: observed through GEMM with identity weights."""
    cfg = TINY
    b = _builder()
    rng = np.random.default_rng(3)
    y, x, stride, pad = 2, 3, 5, (1, 2, 2, 1)
    src = rng.integers(-100, 100, size=(y * stride, cfg.batch, cfg.block_in), dtype=np.int8)
    rows, cols = pad[0] + y + pad[1], pad[2] + x + pad[3]
    n = rows * cols
    a_addr = b.put(MemType.INP, src)
    w_addr = _identity_wgt(b)
    out_addr = b.reserve(MemType.OUT, n)
    kernel = b.uop_kernel([(e, e, 0) for e in range(n)])
    uops = b.load_uops(kernel)
    b.load(MemType.INP, 1, a_addr, y, x, stride, pad=pad)
    b.load(MemType.WGT, 0, w_addr, 1, 1, push_next_dep=True)
    b.gemm(uops, reset=True)
    b.gemm(uops, src=(0, 0), pop_prev_dep=True)
    # The uops read inp[e] but the block starts at 1: shift the source by one via src factor.
    b.insns[-1] = b.insns[-1].__class__(**{**b.insns[-1].__dict__, "src_factor_out": 1,
                                           "push_next_dep": True})
    b.store(0, out_addr, 1, n, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    run_both(b)
    got = b.read(MemType.OUT, out_addr, n).reshape(rows, cols, -1)
    assert np.all(got[0] == 0) and np.all(got[:, :2] == 0) and np.any(got != 0)


def test_padded_acc_load_and_unaligned_uops():
    """ACC padding; micro-ops loaded from odd indices in two strided rows; strided STORE."""
    cfg = TINY
    b = _builder()
    rng = np.random.default_rng(4)
    lanes = cfg.batch * cfg.block_out
    y, x, pad = 2, 2, (1, 1, 1, 2)
    rows, cols = pad[0] + y + pad[1], pad[2] + x + pad[3]
    n = rows * cols
    acc = rng.integers(-1000, 1000, size=(y * x + 3, lanes), dtype=np.int32)
    acc_addr = b.put(MemType.ACC, acc)
    out_addr = b.reserve(MemType.OUT, rows * (cols + 2))
    b.dram.write(out_addr * cfg.out_elem_bytes,
                 rng.integers(0, 256, rows * (cols + 2) * cfg.out_elem_bytes, dtype=np.uint8))
    # Kernel words 1..3 and 6..8 (two rows of 3, stride 5) hold the uops for elements 0..5;
    # the rest are decoys that must not be loaded.
    uops = [(e, 0, 0) for e in range(n)]
    words = [(0, 0, 0)] * 1 + uops[0:3] + [(1, 1, 1)] * 2 + uops[3:6] + [(2, 2, 2)]
    kernel = b.uop_kernel(words)
    b.load(MemType.UOP, 0, kernel.dram_elem + 1, 2, 3, 5)
    rest = b.uop_kernel(uops[6:])
    b.load(MemType.UOP, 6, rest.dram_elem, 1, len(uops) - 6)
    b.load(MemType.ACC, 0, acc_addr + 1, y, x, x + 1, pad=pad)
    b.alu(AluOp.ADD, (0, n), imm=5, push_next_dep=True)
    # A strided STORE: the gaps between rows keep their random bytes (checked against fsim).
    b.store(0, out_addr, rows, cols, cols + 2, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    run_both(b)


@pytest.mark.parametrize("ports", [1, 2], ids=["1port", "2ports"])
def test_alu_back_to_back_hazards(ports):
    """Each micro-op reads and writes what the previous one(s) wrote: the bypass must give
    the functional simulator's sequential result at one micro-op per cycle."""
    b = _builder()
    rng = np.random.default_rng(5)
    lanes = TINY.batch * TINY.block_out
    acc = rng.integers(-50, 50, size=(4, lanes), dtype=np.int32)
    acc_addr = b.put(MemType.ACC, acc)
    out_addr = b.reserve(MemType.OUT, 4)
    kernel = b.uop_kernel([(0, 1, 0), (1, 0, 0), (0, 0, 0), (2, 0, 0), (2, 2, 0), (3, 2, 0)])
    uops = b.load_uops(kernel)
    b.load(MemType.ACC, 0, acc_addr, 1, 4)
    b.alu(AluOp.ADD, uops, iter_out=3, iter_in=2)                  # tensor, chained
    b.alu(AluOp.MAX, (0, 2), iter_out=2, dst=(2, 0), src=(0, 2))   # reduction-like
    b.alu(AluOp.SHR, uops, imm=1)
    b.alu(AluOp.ADD, (0, 3), iter_in=3, imm=-3, push_next_dep=True)  # same dst repeatedly
    b.store(0, out_addr, 1, 4, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    run_both(b, ports=ports)


def test_virtual_threads():
    """Double-buffered GEMM: load, compute and store overlap, ordered only by tokens."""
    cfg = TINY
    b = _builder()
    rng = np.random.default_rng(6)
    T, tiles = 4, 2
    inp = rng.integers(-128, 128, size=(T, tiles, cfg.batch, cfg.block_in), dtype=np.int8)
    wgt = rng.integers(-128, 128, size=(1, cfg.block_out, cfg.block_in), dtype=np.int8)
    i_addr = b.put(MemType.INP, inp)
    w_addr = b.put(MemType.WGT, wgt)
    o_addr = b.reserve(MemType.OUT, T * tiles)
    # One micro-op kernel per tile slot h: slot h uses INP, ACC and OUT [h, h + tiles), so
    # the only reuse across tiles is slot h of tile t+2, ordered by the tokens.
    g = [b.load_uops(b.uop_kernel([(h + e, h + e, 0) for e in range(tiles)]), h)
         for h in (0, tiles)]
    b.load(MemType.WGT, 0, w_addr, 1, 1)
    for t in range(T):
        h = (t % 2) * tiles
        b.load(MemType.INP, h, i_addr + t * tiles, 1, tiles, pop_next_dep=t >= 2,
               push_next_dep=True)
        b.gemm(g[t % 2], reset=True, pop_prev_dep=True, pop_next_dep=t >= 2)
        b.gemm(g[t % 2], push_prev_dep=t + 2 < T)
        b.alu(AluOp.SHR, g[t % 2], imm=6, push_next_dep=True)
        b.store(h, o_addr + t * tiles, 1, tiles, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish(pop_next_dep=True)
    run_both(b, stall=0.2, seed=1)


@pytest.mark.parametrize("changes", [dict(log_batch=1),
                                     dict(log_block=4, axi_data_width=128)],
                         ids=["batch2", "block16-axi128"])
def test_other_configs(changes):
    cfg = TINY.replace(**changes)
    b = _builder(cfg)
    gemm_program(b, np.random.default_rng(7), m=2, k=2, n=2)
    run_both(b, stall=0.2, seed=2)


def run_random(cfg, seed, work, stall, ports=None, latency=0):
    """A random legal program (sim/randprog.py) on fsim and on the core; images must match."""
    from pyvta.sim.randprog import random_program
    p = random_program(cfg, seed, work=work)
    prog = p.encode()
    ref = p.fresh_dram()
    FunctionalSimulator(p.cfg, ref).run(prog)
    init = p.fresh_dram()
    insn_addr = -(-init.end // 64) * 64
    dram = Dram(size=insn_addr - init.base + len(prog), base=init.base, data=init.tobytes())
    dram.write(insn_addr, np.frombuffer(prog, np.uint8))
    run = run_core(p.cfg, dram, insn_addr, len(prog) // 16, stall=stall, seed=seed,
                   core=Core(p.cfg, acc_read_ports=ports), latency=latency)
    image = dram.mem[:init.size]
    diff = np.flatnonzero(image != ref.mem)
    assert diff.size == 0, f"seed {seed}: DRAM differs at {diff.size} bytes, first {diff[0]:#x}"
    assert p.check_guards(image.tobytes()) == []
    assert run.error == 0
    return run


@pytest.mark.parametrize("seed", range(16))
def test_random_programs_tiny(seed):
    run_random(TINY, seed, work=300, stall=0.25 if seed % 2 else 0.0, ports=1 + (seed % 4 < 2),
               latency=(0, 0, 7, 20)[seed % 4])


@pytest.mark.parametrize("changes,seed", [
    (dict(log_block=4, axi_data_width=128), 100),
    (dict(log_batch=1, axi_data_width=32), 200),
    (dict(log_batch=1, log_block=4, axi_data_width=256, log_inp_buff_size=12,
          log_acc_buff_size=14), 300),
], ids=["block16-axi128", "batch2-axi32", "2x16-axi256"])
def test_random_programs_other_configs(changes, seed):
    run_random(TINY.replace(**changes), seed, work=300, stall=0.2)


def _raw_run(b, **kw):
    prog = b.encode()
    addr = b.dram.put(np.frombuffer(prog, np.uint8), align=64)
    return run_core(b.cfg, b.dram, addr, len(prog) // 16, **kw)


def test_error_bits_reported_and_run_completes():
    """Programs fsim rejects still finish on the core, with the matching error bits."""
    from pyvta.hw.core_errors import CoreError
    from pyvta.hw.isa import MemInsn, Opcode
    b = _builder()
    w_addr = _identity_wgt(b)
    b.emit(MemInsn(opcode=Opcode.LOAD, memory_type=MemType.OUT, x_size=1, y_size=1))
    b.load(MemType.WGT, 0, w_addr, 1, 1, pad=(1, 0, 0, 0))
    b.finish()
    run = _raw_run(b)
    assert run.error == CoreError.BAD_INSN | CoreError.BAD_PAD


def test_dma_write_error_reported():
    from pyvta.hw.core_errors import CoreError
    b = _builder()
    alu_program(b, AluOp.ADD, 1)
    assert _raw_run(b, fail_writes=True).error == CoreError.DMA_WRITE


@pytest.mark.parametrize("case", ["no-finish", "deadlock", "deadlock-uop-load", "empty"])
def test_hang_detected(case):
    """A stream without FINISH, a token deadlock, or insn_count 0 stops with HANG (also when
    the scanner holds a GEMM back behind a LOAD UOP that waits for a token forever)."""
    from pyvta.hw.core_errors import CoreError
    b = _builder()
    if case == "no-finish":
        alu_program(b, AluOp.ADD, 1)
        b.insns.pop()  # FINISH
        b.sync("compute", pop_next_dep=True)  # the store token is consumed: queues drain
    elif case == "deadlock":
        b.sync("compute", pop_prev_dep=True)  # nobody ever pushes load->compute
        b.finish()
    elif case == "deadlock-uop-load":
        k = b.uop_kernel([(0, 0, 0)])
        b.alu(AluOp.ADD, b.load_uops(k), imm=1)
        b.load_uops(k, 1, pop_prev_dep=True)  # never pushed
        b.alu(AluOp.ADD, (1, 2), imm=1)
        b.finish()
    if case == "empty":
        run = run_core(b.cfg, b.dram, 0, 0)
    else:
        run = _raw_run(b)
    assert run.error == CoreError.HANG
    assert run.cycles < 100


def test_start_after_hang_resets_the_core():
    """A run that deadlocks with instructions left in the queues, then a good program on the
    same core: ``start`` must clear the leftovers, and the second result must match fsim."""
    from pyvta.hw.core_errors import CoreError
    from pyvta.hw.core_tb import run_core_sequence
    b = _builder()
    b.sync("compute", pop_prev_dep=True)  # deadlock: nobody pushes load->compute
    b.gemm((0, 1), reset=True)
    b.store(0, 0, 1, 1, pop_prev_dep=True)
    b.finish()
    bad = b.encode()
    bad_addr = b.dram.put(np.frombuffer(bad, np.uint8))
    b.insns.clear()
    alu_program(b, AluOp.ADD, 3)
    good = b.encode()
    good_addr = b.dram.put(np.frombuffer(good, np.uint8))
    ref = Dram(data=b.dram.tobytes(), base=b.dram.base)
    FunctionalSimulator(b.cfg, ref).run(good)
    runs = run_core_sequence(b.cfg, b.dram, [(bad_addr, len(bad) // 16),
                                             (good_addr, len(good) // 16)])
    assert runs[0].error == CoreError.HANG
    assert runs[1].error == 0
    assert np.array_equal(ref.mem, b.dram.mem)


def test_default_config_pynq_z1():
    """The real target (16x16, 64-bit bus, one ACC read port): GEMM, tensor ALU, random."""
    cfg = load_config("pynq-z1")
    b = _builder(cfg, 1 << 20)
    gemm_program(b, np.random.default_rng(8), m=2, k=2, n=2)
    run_both(b, stall=0.2)
    b = _builder(cfg, 1 << 20)
    alu_program(b, AluOp.ADD, None)
    run_both(b)
    run_random(cfg, 5, work=150, stall=0.2)


def test_misaligned_insn_addr_rejected():
    from pyvta.hw.core_errors import CoreError
    b = _builder()
    alu_program(b, AluOp.ADD, 1)
    prog = b.encode()
    addr = b.dram.put(np.frombuffer(prog, np.uint8)) + 4
    run = run_core(b.cfg, b.dram, addr, len(prog) // 16)
    assert run.error == CoreError.BAD_ADDR | CoreError.HANG
    assert run.counters["fetch_insns"] == 0


# --- the compute module's scanner and lanes ---------------------------------------------------

def _scan(cfg, uops, insns):
    """Run instructions through a Scanner whose micro-op buffer holds ``uops``; return
    ``(banks, cycle_out - cycle_in)`` per instruction (one instruction at a time)."""
    from amaranth import Elaboratable, Module
    from amaranth.lib.memory import Memory
    from amaranth.sim import Simulator
    from pyvta.hw.isa import encode, encode_uops
    from pyvta.hw.scanner import Scanner

    words = np.frombuffer(encode_uops(uops, cfg), "<u4").tolist()

    class Top(Elaboratable):
        def __init__(self):
            self.scan = Scanner(cfg)

        def elaborate(self, platform):
            m = Module()
            m.submodules.scan = self.scan
            m.submodules.mem = mem = Memory(shape=32, depth=cfg.uop_depth, init=words)
            rp = mem.read_port()
            m.d.comb += [rp.addr.eq(self.scan.uop_rd.addr), rp.en.eq(self.scan.uop_rd.en),
                         self.scan.uop_rd.data.eq(rp.data)]
            return m

    top = Top()
    scan = top.scan
    got = []

    async def bench(ctx):
        for insn in insns:
            ctx.set(scan.cmd.payload, int.from_bytes(encode(insn, cfg), "little"))
            ctx.set(scan.cmd.valid, 1)
            await ctx.tick()
            ctx.set(scan.cmd.valid, 0)
            for cycle in range(1, 100):
                if ctx.get(scan.out.valid):
                    got.append((ctx.get(scan.out.payload.banks), cycle))
                    ctx.set(scan.out.ready, 1)
                    await ctx.tick()
                    ctx.set(scan.out.ready, 0)
                    break
                await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got


def test_scanner_bank_sets_and_latency():
    """Bank sets {bank(lo) .. bank(hi)} of dst (and src of tensor ALU), both banks past the
    end, none for empty loops and non-loop instructions; ready n + 3 cycles after acceptance
    (the first cycle counted is the one after the command was accepted)."""
    from pyvta.hw.isa import AluInsn, FinishInsn, GemmInsn, Uop
    cfg = TINY
    half = cfg.acc_depth // 2
    uops = [Uop(3, 0, 0), Uop(10, 0, 0), Uop(5, 2, 0),                     # 0..2
            Uop(half - 30, 0, 0), Uop(half - 20, 0, 0),                    # 3..4
            Uop(half + 2, 5, 0), Uop(half + 12, 6, 0),                     # 5..6
            Uop(cfg.acc_depth - 6, 0, 0)]                                  # 7
    cases = [
        (GemmInsn(uop_bgn=0, uop_end=3, iter_out=4, iter_in=2, dst_factor_out=20,
                  dst_factor_in=1), 1, 3),      # hi = 10 + 60 + 1 = 71
        (GemmInsn(uop_bgn=3, uop_end=5, iter_out=2, dst_factor_out=30), 3, 2),  # crosses
        (GemmInsn(uop_bgn=5, uop_end=7, reset_reg=True), 2, 2),
        (AluInsn(uop_bgn=5, uop_end=7, use_imm=False), 3, 2),  # src 5, 6: bank 0 too
        (AluInsn(uop_bgn=5, uop_end=7, use_imm=True, imm=1), 2, 2),
        (AluInsn(uop_bgn=5, uop_end=7, iter_in=3, src_factor_in=half, use_imm=False),
         3, 2),
        (GemmInsn(uop_bgn=7, uop_end=8, iter_out=2, dst_factor_out=10), 3, 1),  # past D
        (GemmInsn(uop_bgn=0, uop_end=3, iter_out=0), 0, 1),     # no iterations
        (GemmInsn(uop_bgn=3, uop_end=3), 0, 1),                  # no micro-ops
        (FinishInsn(), 0, 1),
    ]
    got = _scan(cfg, uops, [c[0] for c in cases])
    assert len(got) == len(cases)
    for (insn, banks, n), (g_banks, g_lat) in zip(cases, got):
        assert (g_banks, g_lat) == (banks, n + 3), f"{insn}: got {g_banks}, {g_lat}"


def test_lane_rejects_bad_kind():
    from pyvta.hw.lanes import Lane
    with pytest.raises(ValueError, match="kind must be 'gemm' or 'alu'"):
        Lane(TINY, "vector", 1)


def test_uop_load_writes_a_beat_per_cycle_when_aligned():
    """LOAD UOP of 64 micro-ops: DRAM and buffer indices aligned (a whole 64-bit beat, two
    micro-ops, per cycle) against misaligned by one (one micro-op per cycle); both correct."""
    from pyvta.hw.loader import uop_load_cycles
    cycles = {}
    for sram in (0, 1):
        b = _builder()
        kernel = b.uop_kernel([(i % 8, 0, 0) for i in range(64)])
        b.load_uops(kernel, sram)
        out_addr = b.reserve(MemType.OUT, 8)
        acc = b.put(MemType.ACC, np.arange(8 * TINY.batch * TINY.block_out, dtype=np.int32))
        b.load(MemType.ACC, 0, acc, 1, 8)
        b.alu(AluOp.ADD, (sram, sram + 64), imm=1, push_next_dep=True)
        b.store(0, out_addr, 1, 8, pop_prev_dep=True, push_prev_dep=True)
        b.finish(pop_next_dep=True)
        cycles[sram] = run_both(b).cycles
    assert uop_load_cycles(2, 0, 0, 64) == 32 and uop_load_cycles(2, 0, 1, 64) == 64
    assert cycles[1] - cycles[0] >= 28, cycles
