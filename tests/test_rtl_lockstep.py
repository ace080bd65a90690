"""Lockstep: programs run on the RTL (cocotb + Verilator/Icarus) must leave DRAM exactly as the
functional simulator does, with matching micro-op counters, no AXI protocol errors and
guard bytes around every written region untouched.

Every test batches its programs into one simulator session (the compiled simulator is cached
under ~/.cache/pyvta/rtl). A failing random case prints its seed; rerun it with
``PYVTA_RTL_SEED=<seed> pytest tests/test_rtl_lockstep.py -k random``.
"""

import os
import random

import numpy as np
import pytest

from pyvta.hw.isa import AluOp, MemType, Opcode, decode_program
from pyvta.hw.regmap import fingerprint_hash, MAGIC
from pyvta.hw.config import load_config
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import (alu_program, conformance_suite, gemm_program,
                                padded_load_program)
from pyvta.sim.rtl import RtlJob, RtlSimulator, SimulatorNotFound

pytestmark = pytest.mark.rtl

GUARD = 64          # guard bytes checked on each side of a written region
GUARD_BYTE = 0xA5   # pattern pre-filled into the zero bytes of written regions


class Case:
    """A program, its DRAM image, the regions it writes, and the fsim reference."""

    def __init__(self, name, cfg, insn, dram: Dram, written=None, **timing):
        self.name = name
        if written is None:
            written = store_ranges(cfg, insn)
        image = dram.mem.copy()
        # Pre-fill written regions with a pattern: a missing write is then visible too.
        # (Only the written bytes: the guards around them may hold the program's inputs.)
        for addr, nbytes in written:
            region = image[addr - dram.base:addr - dram.base + nbytes]
            region[region == 0] = GUARD_BYTE
        self.before = image.tobytes()
        self.written = written
        self.base = dram.base
        ref = Dram(base=dram.base, data=self.before)
        self.counters = FunctionalSimulator(cfg, ref).run(insn)
        self.expect = ref.tobytes()
        self.job = RtlJob(insn, self.before, dram.base, name=name, max_cycles=2_000_000,
                          **timing)


def store_ranges(cfg, insn):
    """Byte ranges ``(addr, nbytes)`` every STORE row of a program writes."""
    out = []
    eb = cfg.out_elem_bytes
    for ins in decode_program(insn, cfg):
        if ins.opcode is Opcode.STORE and ins.x_size and ins.y_size:
            for y in range(ins.y_size):
                out.append(((ins.dram_base + y * ins.x_stride) * eb, ins.x_size * eb))
    return out


def check(case: Case, res, cfg, *, counters=True):
    ctx = f"{case.name} (latency={case.job.latency}, stall={case.job.stall}, " \
          f"seed={case.job.seed})"
    assert not res.timeout, f"{ctx}: no interrupt; STATUS={res.regs['STATUS']:#x}"
    assert res.protocol_errors == 0, f"{ctx}: AXI protocol errors"
    assert res.id_regs == {"MAGIC": MAGIC, "ID_HASH": fingerprint_hash(cfg)}, ctx
    assert res.irq_after_clear == 0, f"{ctx}: IRQ_STATUS write-1-to-clear failed"
    got = np.frombuffer(res.dram, np.uint8)
    want = np.frombuffer(case.expect, np.uint8)
    before = np.frombuffer(case.before, np.uint8)
    wmask = np.zeros(before.size, bool)
    gmask = np.zeros(before.size, bool)
    for addr, nbytes in case.written:
        off = addr - case.base
        wmask[off:off + nbytes] = True
        gmask[max(off - GUARD, 0):off + nbytes + GUARD] = True
    gmask &= ~wmask  # guard bytes: near a written region but not written by any store
    assert np.array_equal(got[gmask], before[gmask]), f"{ctx}: guard bytes changed"
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (f"{ctx}: {bad.size} DRAM bytes differ from fsim, first at offset "
                           f"{bad[0]:#x}: rtl {got[bad[0]]:#x} fsim {want[bad[0]]:#x}")
    if counters:
        assert res.error == 0, f"{ctx}: ERROR={res.error:#x}"
        assert res.counters.counters["fetch_insns"] == case.counters.total_insns, ctx
        assert res.counters.counters["gemm_uops"] == case.counters.gemm_uops, ctx
        assert res.counters.counters["alu_uops"] == case.counters.alu_uops, ctx
        assert res.cycles > 0


def gemm_case(cfg, rng, m, k, n, threads, name=None, tile=None, bias_mode="auto", **timing):
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    bias = rng.integers(-3000, 3000, n).astype(np.int32)
    shift = int(rng.integers(0, 12))
    clip = [None, (-128, 127), (0, 127)][int(rng.integers(0, 3))]
    p = gemm_program(cfg, a, w, bias=bias, shift=shift, clip=clip, threads=threads, tile=tile,
                     bias_mode=bias_mode)
    return Case(name or f"gemm {m}x{k}x{n} t{threads} {p.tiling.order}", cfg, p.encode(),
                p.dram, p.written,
                **timing)


def alu_case(cfg, rng, ops, rows=6, lo=-16, hi=16, **timing):
    shape = (rows, cfg.batch, cfg.block_out)
    x = rng.integers(lo, hi, shape).astype(np.int32)
    y = rng.integers(lo, hi, shape).astype(np.int32)
    b, out_elem, rows = alu_program(cfg, x, ops, y)
    written = [(out_elem * cfg.out_elem_bytes, rows * cfg.out_elem_bytes)]
    name = "alu " + ",".join(f"{AluOp(op).name}:{v}" for op, v in ops)
    return Case(name, cfg, b.encode(), b.dram, written, **timing)


def pad_case(cfg, rng, pad, mem, **timing):
    if mem is MemType.INP:
        x = rng.integers(-128, 128, (3, 4, cfg.batch, cfg.block_in), dtype=np.int8)
    else:
        x = rng.integers(-300, 300, (3, 4, cfg.batch, cfg.block_out)).astype(np.int32)
    b, out_elem, (rows, cols) = padded_load_program(cfg, x, pad, mem)
    written = [(out_elem * cfg.out_elem_bytes, rows * cols * cfg.out_elem_bytes)]
    return Case(f"pad {mem.name} {pad}", cfg, b.encode(), b.dram, written, **timing)


def conformance_cases(cfg, large, **timing):
    """VTA's own conformance checks (docs/vta-isa.md) from sim/programs.py."""
    return [Case(name, cfg, b.encode(), b.dram, **timing)
            for name, b in conformance_suite(cfg, large=large)]


def run_and_check(cfg, simulator, cases, counters=True):
    try:
        sim = RtlSimulator(cfg, simulator)
    except SimulatorNotFound as exc:
        pytest.fail(str(exc))
    results = sim.run([c.job for c in cases])
    for case, res in zip(cases, results):
        check(case, res, sim.cfg, counters=counters)
    return results


def test_rtl_conformance_tiny_verilator():
    cfg = load_config("tiny")
    run_and_check(cfg, "verilator", conformance_cases(cfg, False, latency=12, stall=40, seed=3))


def test_rtl_random_tiny_verilator():
    """Random GEMM and ALU programs under random DRAM latency and AXI stalls."""
    cfg = load_config("tiny")
    seed0 = int(os.environ.get("PYVTA_RTL_SEED", 20261124))
    count = 1 if "PYVTA_RTL_SEED" in os.environ else 200
    cases = []
    for i in range(count):
        seed = seed0 + i
        r = random.Random(seed)
        rng = np.random.default_rng(seed)
        timing = dict(latency=r.choice([0, 1, 5, 30, 100]), stall=r.choice([0, 30, 128, 220]),
                      seed=seed)
        if r.random() < 0.75:
            m, k, n = r.randrange(1, 70), r.randrange(1, 70), r.randrange(1, 40)
            case = gemm_case(cfg, rng, m, k, n, r.choice([1, 2]), **timing)
        else:
            ops = [(r.choice(list(AluOp)), r.choice([r.randrange(-20, 20), "tensor"]))
                   for _ in range(r.randrange(1, 4))]
            case = alu_case(cfg, rng, ops, rows=r.randrange(1, 20), lo=-2000, hi=2000,
                            **timing)
        case.name += f" [PYVTA_RTL_SEED={seed}]"
        cases.append(case)
    run_and_check(cfg, "verilator", cases)


@pytest.mark.slow
def test_rtl_default_config_verilator():
    """The default (VTA) configuration: conformance subset, 128^3 GEMM, random timing."""
    cfg = load_config("pynq-z1")
    rng = np.random.default_rng(7)
    cases = [gemm_case(cfg, rng, 128, 128, 128, 2, latency=20),
             gemm_case(cfg, rng, 49, 200, 70, 1, latency=50, stall=100, seed=9),
             gemm_case(cfg, rng, 100, 64, 48, 2, latency=3, stall=200, seed=11),
             gemm_case(cfg, rng, 40, 64, 48, 2, tile="resident", bias_mode="alu", latency=11,
                       stall=120, seed=3),
             alu_case(cfg, rng, [(AluOp.MAX, 0), (AluOp.MIN, 127)], lo=-256, hi=256,
                      latency=7, stall=60, seed=5),
             pad_case(cfg, rng, (1, 1, 1, 1), MemType.INP, latency=9, stall=90, seed=13)]
    run_and_check(cfg, "verilator", cases)


def test_rtl_icarus_subset():
    """The same harness under Icarus (conformance padded-load, ALU and GEMM programs, and
    small random ones under random DRAM timing, and a two-lane program), from reset with no
    warm-up program: DRAM, the ERROR register and the micro-op counters are
    checked as under Verilator, and every register (cycle count and stall counters included)
    must equal Verilator's, since both simulate the same RTL and DRAM model.

    Icarus is four-state and compiled by cocotb as SystemVerilog: before ``fix_comb_init``
    (``hw/verilog.py``) combinational blocks whose inputs had not changed since time zero held
    X there, so the first STORE after reset hung and counters read X."""
    cfg = load_config("tiny")
    suite = dict(conformance_suite(cfg, large=False))
    names = ["padded_load_ACC_1_1_1_1", "padded_load_INP_1_1_1_1", "alu_add_tensor",
             "relu_clip", "gemm_shr_max_min_2thread"]
    cases = [Case(n, cfg, suite[n].encode(), suite[n].dram, latency=4 * i, stall=50 * i,
                  seed=i + 1) for i, n in enumerate(names)]
    # The two compute lanes: overlap across banks, and pushes deferred past busy lanes.
    cases.append(lanes_case(cfg, np.random.default_rng(3), "lanes", alu_base=cfg.acc_depth // 2,
                            alu_rows=16, gemm_rows=16, extra=_deferred_pushes, latency=2,
                            stall=40, seed=7))
    cases += [lanes_mix_case(cfg, 700 + i, n_insns=12, latency=3 * i, stall=70 * i, seed=i + 9)
              for i in range(3)]
    # A few small random programs too (Icarus runs ~5,000 cycles/s).
    for seed in range(5150, 5158):
        r, rng = random.Random(seed), np.random.default_rng(seed)
        timing = dict(latency=r.choice([0, 1, 5, 30]), stall=r.choice([0, 30, 128, 220]),
                      seed=seed)
        if r.random() < 0.6:
            case = gemm_case(cfg, rng, r.randrange(1, 24), r.randrange(1, 24),
                             r.randrange(1, 16), r.choice([1, 2]), **timing)
        else:
            ops = [(r.choice(list(AluOp)), r.choice([r.randrange(-20, 20), "tensor"]))
                   for _ in range(r.randrange(1, 4))]
            case = alu_case(cfg, rng, ops, rows=r.randrange(1, 10), lo=-2000, hi=2000,
                            **timing)
        case.name += f" [seed {seed}]"
        cases.append(case)
    for case in cases:
        case.job.max_cycles = 50_000  # fail fast on a hang
    results = run_and_check(cfg, "icarus", cases)
    reference = RtlSimulator(cfg, "verilator").run([c.job for c in cases])
    for case, got, want in zip(cases, results, reference):
        assert got.regs == want.regs, f"{case.name}: icarus {got.regs} verilator {want.regs}"
        assert got.beats_read == want.beats_read and got.beats_written == want.beats_written


def _iverilog_time_zero(verilog_text: str, tmp_path, top: str, probe: str) -> str:
    """Compile ``verilog_text`` as cocotb does (``iverilog -g2012``) and return ``probe``'s
    value (as ``%b`` text) one time unit after time zero, with the inputs held constant."""
    import shutil
    import subprocess
    if not shutil.which("iverilog") or not shutil.which("vvp"):
        pytest.fail("Icarus Verilog is not installed: run `apt-get install iverilog`")
    (tmp_path / "dut.v").write_text(verilog_text)
    (tmp_path / "tb.v").write_text(
        f"module tb; reg clk = 0; reg rst = 0; reg go = 0; wire out;\n"
        f"  {top} dut(.clk(clk), .rst(rst), .go(go), .{probe}(out));\n"
        f"  initial #1 $display(\"probe=%b\", out);\nendmodule\n")
    vvp = tmp_path / "sim.vvp"
    subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", str(vvp), str(tmp_path / "dut.v"),
                    str(tmp_path / "tb.v")], check=True, capture_output=True, text=True)
    out = subprocess.run(["vvp", "-n", str(vvp)], check=True, capture_output=True,
                         text=True).stdout
    return out.split("probe=")[1].split()[0]


def test_verilog_comb_blocks_evaluate_at_time_zero_under_icarus(tmp_path):
    """The root cause of the Icarus-only hang, on a small design: an FSM's combinational
    output whose inputs never change must be 0 at time zero, not X, in Verilog from
    ``fix_comb_init`` (and is X in Yosys's raw output, so the test can tell them apart)."""
    from amaranth import Module
    from amaranth.back import verilog
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from pyvta.hw.verilog import fix_comb_init

    class Idle(wiring.Component):
        go: In(1)
        stall: Out(1)

        def elaborate(self, platform):
            m = Module()
            with m.FSM():
                with m.State("IDLE"):
                    with m.If(self.go):
                        m.next = "WAIT"
                with m.State("WAIT"):
                    m.d.comb += self.stall.eq(1)
            return m

    raw = verilog.convert(Idle(), name="idle", emit_src=False)
    fixed = fix_comb_init(raw)
    assert fixed != raw and fix_comb_init(fixed) == fixed
    assert _iverilog_time_zero(raw, tmp_path, "idle", "stall") == "x"
    assert _iverilog_time_zero(fixed, tmp_path, "idle", "stall") == "0"


def test_generated_verilog_has_no_sv_fragile_trigger():
    """Every ``always @*`` trigger of the accelerator's Verilog is set by an ``initial``
    non-blocking assignment, none by a declaration initialiser."""
    import re
    from pyvta.hw.verilog import generate_verilog
    text = generate_verilog(load_config("tiny"))
    declared = re.findall(r"^\s*reg (\\\S*dump_module\S*) ;$", text, re.M)
    assert declared, "no always @* trigger found: has the Verilog backend changed?"
    for name in declared:
        assert f"initial {name} <= 1'b0;" in text
    assert not re.search(r"reg \\\S*dump_module\S* = ", text)


def test_rtl_hang_is_reported_and_next_job_runs():
    """A program that waits for a token nobody pushes is reported (the core's HANG error,
    or else the session's cycle limit); the next program in the session still runs
    correctly."""
    from pyvta.compiler.builder import ProgramBuilder
    cfg = load_config("tiny")
    b = ProgramBuilder(cfg, Dram(4096))
    b.sync("compute", pop_prev_dep=True)   # no LOAD ever pushes this token
    b.finish()
    rng = np.random.default_rng(3)
    good = alu_case(cfg, rng, [(AluOp.ADD, 1)])
    sim = RtlSimulator(cfg, "verilator")
    hang = RtlJob(b.encode(), b.dram.tobytes(), max_cycles=3000, name="hang")
    res_hang, res_good = sim.run([hang, good.job])
    from pyvta.hw.core_errors import CoreError
    if res_hang.timeout:
        assert res_hang.regs["STATUS"] & 2, "BUSY should still be set on a hung run"
    else:
        assert res_hang.error & int(CoreError.HANG), f"ERROR={res_hang.error:#x}"
    check(good, res_good, cfg)


def test_rtl_bad_arguments():
    with pytest.raises(ValueError, match="simulator must be one of"):
        RtlSimulator("tiny", "modelsim")
    sim = RtlSimulator("tiny", "verilator")
    with pytest.raises(ValueError, match="multiple of 16"):
        sim.run([RtlJob(b"\0" * 10, b"")])
    with pytest.raises(ValueError, match="stall"):
        sim.run([RtlJob(b"\0" * 16, b"", stall=300)])


def test_rtl_missing_simulator_message(monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SimulatorNotFound, match="apt-get install iverilog"):
        RtlSimulator("tiny", "icarus")


def test_rtl_target_of_sim_run(tmp_path):
    """``pyvta sim run --target rtl`` (the raw-program interface) equals ``--target fsim``."""
    from pyvta.__main__ import main
    cfg = load_config("tiny")
    b = dict(conformance_suite(cfg, large=False))["gemm_shr_max_min_2thread"]
    (tmp_path / "insn.bin").write_bytes(b.encode())
    (tmp_path / "dram.bin").write_bytes(b.dram.tobytes())
    outs = {}
    for target in ("fsim", "rtl"):
        out = tmp_path / f"{target}.bin"
        assert main(["sim", "run", "--insn", str(tmp_path / "insn.bin"), "--dram",
                     str(tmp_path / "dram.bin"), "--out", str(out), "--config", "tiny",
                     "--target", target]) == 0
        outs[target] = out.read_bytes()
    assert outs["rtl"] == outs["fsim"]


def test_hw_verilog_cli(tmp_path):
    import json
    from pyvta.__main__ import main
    from pyvta.hw.regmap import register_map
    assert main(["hw", "verilog", "--config", "tiny", "-o", str(tmp_path)]) == 0
    cfg = load_config("tiny")
    text = (tmp_path / f"{cfg.fingerprint}.v").read_text()
    assert "module pyvta_top" in text
    for port in ("m_axi_araddr", "m_axi_wlast", "s_axi_control_awaddr", "interrupt"):
        assert port in text
    meta = json.loads((tmp_path / f"{cfg.fingerprint}.json").read_text())
    assert meta["register_map"] == register_map(cfg).to_dict()
    assert meta["config"] == cfg.to_dict()


def test_rtl_128bit_bus_verilator():
    """A 128-bit AXI configuration (zcu104): GEMM and ALU under stalls."""
    cfg = load_config("zcu104")
    rng = np.random.default_rng(4)
    cases = [gemm_case(cfg, rng, 64, 96, 48, 2, latency=30, stall=80, seed=7),
             alu_case(cfg, rng, [(AluOp.ADD, "tensor"), (AluOp.SHR, 2)], latency=5, stall=150,
                      seed=9)]
    run_and_check(cfg, "verilator", cases)


# --- two execution lanes (docs/hardware.md, "Compute module") -------------------------------

def lanes_case(cfg, rng, name, alu_base, gemm_base=0, gemm_rows=32, alu_rows=48,
               alu_passes=4, extra=None, **timing):
    """A long GEMM into ACC ``[gemm_base, +gemm_rows)`` and ALU passes over ACC
    ``[alu_base, +alu_rows)`` (loaded from DRAM), then both regions stored.

    With the two regions in different ACC banks the ALU passes run in lane A while lane G runs
    the GEMM; in the same bank they serialise. ``extra(b)`` may add instructions before the
    stores (they must leave one compute->store token per store pushed, see below)."""
    from pyvta.compiler.builder import ProgramBuilder
    lanes = cfg.batch * cfg.block_out
    b = ProgramBuilder(cfg, Dram(1 << 18))
    ni, nw = 16, 8
    inp = rng.integers(-128, 128, (ni, cfg.batch, cfg.block_in), dtype=np.int8)
    wgt = rng.integers(-128, 128, (nw, cfg.block_out, cfg.block_in), dtype=np.int8)
    acc = rng.integers(-5000, 5000, (alu_rows, lanes), dtype=np.int32)
    i_addr, w_addr = b.put(MemType.INP, inp), b.put(MemType.WGT, wgt)
    a_addr = b.put(MemType.ACC, acc)
    g_out = b.reserve(MemType.OUT, gemm_rows)
    a_out = b.reserve(MemType.OUT, alu_rows)
    gk = b.uop_kernel([(gemm_base + j, j % ni, (j * 3) % nw) for j in range(gemm_rows)])
    ak = b.uop_kernel([(alu_base + j, alu_base + (j + 1) % alu_rows, 0)
                       for j in range(alu_rows)])
    g = b.load_uops(gk, 0)
    a = b.load_uops(ak, gemm_rows)
    b.load(MemType.ACC, alu_base, a_addr, 1, alu_rows)
    b.load(MemType.INP, 0, i_addr, 1, ni)
    b.load(MemType.WGT, 0, w_addr, 1, nw, push_next_dep=True)
    b.gemm(g, reset=True)
    b.gemm(g, iter_out=6, pop_prev_dep=True)
    ops = [(AluOp.ADD, 3), (AluOp.MAX, None), (AluOp.SHR, 1), (AluOp.MUL, -3),
           (AluOp.MIN, None), (AluOp.ADD, -7)]
    for p in range(alu_passes):
        op, imm = ops[p % len(ops)]
        b.alu(op, a, imm=imm)
    n_tokens = 0
    if extra is not None:
        n_tokens = extra(b)
    b.sync("compute", push_next_dep=True)
    b.store(gemm_base, g_out, 1, gemm_rows, pop_prev_dep=True)
    for _ in range(n_tokens):
        b.sync("store", pop_prev_dep=True)
    b.store(alu_base, a_out, 1, alu_rows, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    eb = cfg.out_elem_bytes
    written = [(g_out * eb, gemm_rows * eb), (a_out * eb, alu_rows * eb)]
    return Case(name, cfg, b.encode(), b.dram, written, **timing)


def _deferred_pushes(b):
    """Token-only syncs and empty GEMMs that push while lane G still runs the GEMM: each push
    may only fire once everything before it is done; more pushes than the pending-push FIFO
    holds (dispatch waits for room)."""
    for i in range(6):
        if i % 2:
            b.sync("compute", push_next_dep=True)
        else:
            b.gemm((0, 0), push_next_dep=True)  # no micro-ops: token-only
    return 6


def test_rtl_lanes_overlap_verilator():
    """ALU passes on ACC bank 1 overlap a GEMM on bank 0 (fewer cycles than the same work in
    one bank); instructions spanning both banks; deferred pushes. All exact against fsim."""
    cfg = load_config("tiny")
    half = cfg.acc_depth // 2
    rng = np.random.default_rng(12)
    par = lanes_case(cfg, rng, "lanes: ALU bank 1 || GEMM bank 0", alu_base=half + 8)
    ser = lanes_case(cfg, np.random.default_rng(12), "lanes: ALU and GEMM in bank 0",
                     alu_base=64)
    span = lanes_case(cfg, rng, "lanes: ALU spans both banks", alu_base=half - 20,
                      gemm_base=half - 10, latency=5, stall=60, seed=4)
    rev = lanes_case(cfg, rng, "lanes: GEMM bank 1, ALU bank 0", alu_base=0,
                     gemm_base=half + 40, alu_passes=6, latency=9, stall=120, seed=5)
    dfr = lanes_case(cfg, rng, "lanes: deferred pushes", alu_base=half, alu_rows=8,
                     alu_passes=1, extra=_deferred_pushes, latency=3, stall=30, seed=6)
    res = run_and_check(cfg, "verilator", [par, ser, span, rev, dfr])
    alu_cycles = 4 * 48 * 1  # ALU micro-op slots of the four passes (two with two slots)
    assert res[0].cycles + alu_cycles // 2 < res[1].cycles, \
        f"no overlap: {res[0].cycles} cycles in two banks vs {res[1].cycles} in one"


def lanes_mix_case(cfg, prog_seed, n_insns=24, **timing):
    """A random mix of GEMM, reset and ALU instructions over both ACC banks (most inside one
    bank, some spanning both) with no tokens between them: the lanes may reorder only
    instructions on disjoint banks, so the result must equal sequential execution."""
    from pyvta.compiler.builder import ProgramBuilder
    rng = np.random.default_rng(prog_seed)
    D, half = cfg.acc_depth, cfg.acc_depth // 2
    lanes = cfg.batch * cfg.block_out
    ni, nw = 32, min(16, cfg.wgt_depth)
    b = ProgramBuilder(cfg, Dram(1 << 18))
    inp = rng.integers(-128, 128, (ni, cfg.batch, cfg.block_in), dtype=np.int8)
    wgt = rng.integers(-128, 128, (nw, cfg.block_out, cfg.block_in), dtype=np.int8)
    acc = rng.integers(-3000, 3000, (D, lanes)).astype(np.int32)
    i_addr, w_addr, a_addr = (b.put(MemType.INP, inp), b.put(MemType.WGT, wgt),
                              b.put(MemType.ACC, acc))
    out = b.reserve(MemType.OUT, D)
    uops, insns = [], []
    for _ in range(n_insns):
        kind = rng.choice(["gemm", "reset", "alu", "alu"])
        nu = int(rng.integers(1, 5))
        io, ii = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        fo, fi = int(rng.integers(0, 9)), int(rng.integers(0, 3))
        span = (io - 1) * fo + (ii - 1) * fi
        width = nu + 8
        if rng.random() < 0.8:          # inside one bank
            lo = int(rng.integers(0, 2)) * half
            base = lo + int(rng.integers(0, half - span - width))
        else:                            # anywhere, usually across the middle
            base = int(rng.integers(half - 40, half + 10))
        dsts = [base + int(rng.integers(0, width)) for _ in range(nu)]
        if kind == "alu":
            tensor = rng.random() < 0.5
            # src in the same bank as dst, or (sometimes) in the other one
            sbase = base if rng.random() < 0.7 else (base + half) % (D - span - width)
            srcs = [sbase + int(rng.integers(0, width)) for _ in range(nu)]
            u = [(d, s, 0) for d, s in zip(dsts, srcs)]
        else:
            u = [(d, int(rng.integers(0, ni - 8)), int(rng.integers(0, nw - 4))) for d in dsts]
        bgn = len(uops)
        uops += u
        insns.append((kind, (bgn, len(uops)), io, ii, fo, fi,
                      tensor if kind == "alu" else False))
    zero = len(uops)
    uops.append((0, 0, 0))
    k = b.uop_kernel(uops)
    b.load_uops(k, 0)
    b.load(MemType.ACC, 0, a_addr, 1, D)
    # Write every OUT element once (OUT SRAM contents survive from earlier programs of the
    # session, fsim starts from zeros): an ALU pass over both banks.
    b.alu(AluOp.ADD, (zero, zero + 1), iter_out=D, dst=(1, 0), imm=0)
    b.load(MemType.INP, 0, i_addr, 1, ni)
    b.load(MemType.WGT, 0, w_addr, 1, nw, push_next_dep=True)
    first_gemm = True
    ops = [AluOp.MIN, AluOp.MAX, AluOp.ADD, AluOp.SHR, AluOp.MUL]
    for kind, rng_u, io, ii, fo, fi, tensor in insns:
        loop = dict(iter_out=io, iter_in=ii, dst=(fo, fi))
        if kind == "alu":
            op = ops[int(rng.integers(0, len(ops)))]
            imm = None if tensor else int(rng.integers(-40, 40))
            if op is AluOp.MUL and imm is None:
                op = AluOp.ADD  # keep products of products from growing without bound
            b.alu(op, rng_u, src=(fo, fi), imm=imm, **loop)
        else:
            pop = kind == "gemm" and first_gemm
            first_gemm &= not pop
            b.gemm(rng_u, src=(1, 2), wgt=(1, 0), reset=kind == "reset",
                   pop_prev_dep=pop, **loop)
    if first_gemm:
        b.sync("compute", pop_prev_dep=True)
    b.sync("compute", push_next_dep=True)
    b.store(0, out, 1, D, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    written = [(out * cfg.out_elem_bytes, D * cfg.out_elem_bytes)]
    return Case(f"lanes mix [program seed {prog_seed}]", cfg, b.encode(), b.dram, written, **timing)


def test_rtl_lanes_random_mix_verilator():
    """Random GEMM/reset/ALU mixes over both banks under random DRAM timing, on tiny (two ACC
    read ports per bank) and on pynq-z1 (one: tensor ALU micro-ops take two slots)."""
    for preset, count in (("tiny", 40), ("pynq-z1", 6)):
        cfg = load_config(preset)
        cases = []
        for seed in range(count):
            r = random.Random(seed)
            cases.append(lanes_mix_case(cfg, 900 + seed, n_insns=r.choice([8, 24, 48]),
                                        latency=r.choice([0, 5, 30]),
                                        stall=r.choice([0, 60, 200]), seed=seed + 1))
        run_and_check(cfg, "verilator", cases)
