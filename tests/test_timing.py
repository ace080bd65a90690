"""The timing model (sim/timing.py): its accuracy against the RTL, its report and its errors.

The RTL comparison runs tiled GEMMs (``sim/programs.gemm_program``) and long random programs
(``sim/randprog.random_program``) on the Verilator simulation of the tiny preset, in one
session, under several DRAM latencies and stall densities, and requires the estimate within
5 % of the measured cycles on every program longer than 10,000 cycles.
"""

import numpy as np
import pytest

from pyvta.__main__ import main
from pyvta.compiler.builder import ProgramBuilder
from pyvta.hw.config import load_config
from pyvta.hw.isa import AluOp, MemType, Opcode, decode_program
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import gemm_program
from pyvta.sim.randprog import random_program
from pyvta.sim.timing import TimingError, TimingModel, estimate_cycles

LONG = 10_000
TOLERANCE = 0.05


def _gemm(cfg, m, k, n, threads, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    bias = rng.integers(-3000, 3000, n).astype(np.int32)
    return gemm_program(cfg, a, w, bias=bias, shift=8, threads=threads)


def _single_gemm(cfg, uops, iters, alu=None):
    """One GEMM (or ALU) instruction of ``uops`` micro-ops x ``iters`` iterations."""
    b = ProgramBuilder(cfg, Dram(1 << 20))
    kernel = b.uop_kernel([(u % 16, u % 8, u % 4) for u in range(uops)])
    g = b.load_uops(kernel)
    if alu is None:
        b.gemm(g, iter_out=iters, dst=(0, 0), src=(0, 0), wgt=(0, 0), push_next_dep=True)
    else:
        b.alu(alu, g, iter_out=iters, push_next_dep=True)
    out = b.reserve(MemType.OUT, 16)
    b.store(0, out, 1, 16, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    return b.encode()


@pytest.mark.rtl
def test_model_within_5_percent_of_rtl():
    from pyvta.sim.rtl import RtlJob, RtlSimulator
    cfg = load_config("tiny")
    jobs = []
    for (m, k, n, t), lat in (((128, 128, 128, 2), 8), ((200, 96, 40, 1), 30),
                              ((160, 64, 48, 1), 60)):
        p = _gemm(cfg, m, k, n, t)
        jobs.append(RtlJob(p.encode(), p.dram.tobytes(), p.dram.base, latency=lat,
                           name=f"gemm {m}x{k}x{n} t{t}"))
    for seed, lat, stall, threads in ((1, 8, 0, 2), (2, 50, 0, 1), (3, 4, 128, 2),
                                      (4, 100, 30, None)):
        rp = random_program(cfg, seed, work=25_000, threads=threads)
        jobs.append(RtlJob(rp.encode(), rp.dram.tobytes(), rp.dram.base, latency=lat,
                           stall=stall, seed=seed, name=f"random {seed}"))
    results = RtlSimulator(cfg, "verilator").run(jobs)
    long_ones = 0
    for job, res in zip(jobs, results):
        assert not res.timeout and res.error == 0, job.name
        est = estimate_cycles(cfg, job.insn, dram_latency=job.latency, dram_stall=job.stall,
                              dram=(job.dram, job.dram_base))
        err = est.cycles / res.cycles - 1
        ctx = (f"{job.name} (latency {job.latency}, stall {job.stall}): model {est.cycles}, "
               f"RTL {res.cycles} cycles, error {err:+.1%}")
        if res.cycles > LONG:
            long_ones += 1
            assert abs(err) < TOLERANCE, ctx
        # The per-module breakdown follows the RTL's performance counters.
        c = res.counters.counters
        assert est.gemm_uops == c["gemm_uops"] and est.alu_uops == c["alu_uops"], ctx
        for mod in ("load", "compute", "store"):
            assert est.modules[mod].busy == pytest.approx(c[f"{mod}_busy"], rel=0.1), \
                f"{ctx}: {mod} busy"
    assert long_ones >= 6


def test_report_matches_the_program():
    cfg = load_config("tiny")
    p = _gemm(cfg, 64, 64, 32, 2)
    insn = p.encode()
    rep = estimate_cycles(cfg, insn)
    counters = FunctionalSimulator(cfg, Dram(base=p.dram.base,
                                             data=p.dram.tobytes())).run(insn)
    assert len(rep.insns) == len(decode_program(insn, cfg))
    assert rep.gemm_uops == counters.gemm_uops and rep.alu_uops == counters.alu_uops
    assert sum(m.insns for m in rep.modules.values()) == len(rep.insns)
    for mod, stats in rep.modules.items():
        assert 0 < stats.busy <= rep.cycles
        assert stats.token_stall <= stats.busy
        recs = [r for r in rep.insns if r.module == mod]
        for a, b in zip(recs, recs[1:]):
            assert b.start >= a.start and b.dispatch > a.dispatch, mod
        for r in recs:
            assert r.dispatch < r.start <= r.end <= r.done <= rep.cycles
    assert rep.insns[-1].kind == "FINISH" and rep.insns[-1].start == rep.cycles - 1
    assert "cycles (estimated" in rep.summary() and rep.to_dict()["cycles"] == rep.cycles
    assert 0 < rep.macs_per_cycle <= cfg.macs_per_cycle


def test_compute_bound_gemm_runs_at_one_uop_per_cycle():
    cfg = load_config("tiny")
    rep = estimate_cycles(cfg, _single_gemm(cfg, 16, 1000))
    gemm = next(r for r in rep.insns if r.kind == "GEMM")
    assert gemm.work == 16_000
    # Issue, pipeline drain, the micro-op load and the store are a few hundred cycles at most.
    assert 16_000 < rep.cycles < 16_400


def test_tensor_alu_takes_two_slots_with_one_acc_read_port():
    cfg = load_config("tiny")
    prog = _single_gemm(cfg, 8, 500, alu=AluOp.ADD)
    one = TimingModel(cfg, acc_read_ports=1).estimate(prog).cycles
    two = TimingModel(cfg, acc_read_ports=2).estimate(prog).cycles
    assert one - two == pytest.approx(4000, abs=5)


def test_latency_and_stalls_cost_cycles():
    cfg = load_config("tiny")
    rp = random_program(cfg, 7, work=5000)
    insn = rp.encode()
    base = estimate_cycles(cfg, insn, dram_latency=0).cycles
    slow = estimate_cycles(cfg, insn, dram_latency=100).cycles
    stalled = estimate_cycles(cfg, insn, dram_latency=0, dram_stall=200).cycles
    loads = sum(1 for i in decode_program(insn, cfg)
                if i.opcode in (Opcode.LOAD, Opcode.STORE) and i.x_size and i.y_size)
    # Every non-empty LOAD/STORE waits for the latency at least once, serially per module.
    assert slow - base > 100 * loads / 3
    assert stalled > base


def test_fetch_bound_stream():
    """Many tiny instructions: the fetch stage (two beats per instruction on a 64-bit bus)
    is the bottleneck."""
    cfg = load_config("tiny")
    b = ProgramBuilder(cfg, Dram(1 << 16))
    for _ in range(2000):
        b.sync("compute")
    b.finish()
    rep = estimate_cycles(cfg, b.encode())
    beats = 16 // cfg.axi_bytes
    assert 2001 * beats <= rep.cycles <= 2001 * beats + 100


def test_bad_arguments():
    cfg = load_config("tiny")
    with pytest.raises(TimingError, match=r"dram_latency must be an integer in \[0, 65535\]"):
        estimate_cycles(cfg, b"", dram_latency=-1)
    with pytest.raises(TimingError, match="dram_latency"):
        estimate_cycles(cfg, b"", dram_latency=2.5)
    with pytest.raises(TimingError, match=r"dram_stall must be an integer in \[0, 255\], "
                                          r"not 256"):
        estimate_cycles(cfg, b"", dram_stall=256)
    with pytest.raises(TimingError, match="acc_read_ports must be 1 or 2, not 3"):
        TimingModel(cfg, acc_read_ports=3)
    with pytest.raises(TimingError, match="empty"):
        estimate_cycles(cfg, b"")
    with pytest.raises(ValueError, match="multiple of 16"):
        estimate_cycles(cfg, bytes(20))


def test_programs_that_never_finish():
    cfg = load_config("tiny")
    b = ProgramBuilder(cfg, Dram(4096))
    b.sync("compute", pop_prev_dep=True)  # no LOAD ever pushes this token
    b.finish()
    with pytest.raises(TimingError, match="never finish.*compute: instruction 0"):
        estimate_cycles(cfg, b.encode())
    b = ProgramBuilder(cfg, Dram(4096))
    b.sync("load")
    with pytest.raises(TimingError, match="never finish"):
        estimate_cycles(cfg, b.encode())


def test_cli_fsim_prints_estimated_cycles(capsys, tmp_path):
    cfg = load_config("tiny")
    p = _gemm(cfg, 32, 32, 16, 2)
    (tmp_path / "insn.bin").write_bytes(p.encode())
    (tmp_path / "dram.bin").write_bytes(p.dram.tobytes())
    code = main(["sim", "run", "--config", "tiny", "--insn", str(tmp_path / "insn.bin"),
                 "--dram", str(tmp_path / "dram.bin"), "--dram-base", str(p.dram.base),
                 "--out", str(tmp_path / "out.bin")])
    out = capsys.readouterr().out
    assert code in (0, None)
    want = estimate_cycles(cfg, p.encode(), dram=(p.dram.tobytes(), p.dram.base)).cycles
    assert f"; {want} cycles (estimated);" in out


# --- the two compute lanes (sim/lanes.py) --------------------------------------------------------

def _lane_program(cfg, alu_dst, *, push_on_gemm=False):
    """A long GEMM on ACC bank 0, then an ALU pass on ``alu_dst`` (bank 0 or 1)."""
    b = ProgramBuilder(cfg, Dram(1 << 20))
    g = b.load_uops(b.uop_kernel([(u, u % 8, u % 4) for u in range(8)]))
    a = b.load_uops(b.uop_kernel([(alu_dst, 0, 0)]), sram=8)
    b.gemm(g, iter_out=500, push_next_dep=push_on_gemm)
    b.alu(AluOp.ADD, a, iter_out=100, dst=(1, 0), imm=1, push_next_dep=not push_on_gemm)
    out = b.reserve(MemType.OUT, 16)
    b.store(0, out, 1, 16, pop_prev_dep=True, push_prev_dep=True)
    b.finish(pop_next_dep=True)
    return b


def test_bank_sets_follow_the_micro_ops():
    from pyvta.sim.lanes import BOTH_BANKS, UopShadow, bank_set
    cfg = load_config("tiny")
    half = cfg.acc_depth // 2
    b = ProgramBuilder(cfg, Dram(1 << 16))
    k = b.uop_kernel([(3, 0, 0), (half - 5, 0, 0), (half + 1, 7, 0)])
    b.load_uops(k)
    shadow = UopShadow(cfg, b.dram)
    shadow.load(b.insns[-1])
    b.gemm((0, 1), iter_out=4, dst=(1, 0))            # 3 .. 6: bank 0
    b.gemm((1, 2), iter_out=5, dst=(1, 0))            # half-5 .. half-1: bank 0
    b.gemm((1, 2), iter_out=6, dst=(1, 0))            # reaches half: both
    b.gemm((2, 3), iter_out=2, iter_in=3, dst=(4, 1))  # half+1 .. half+7: bank 1
    b.alu(AluOp.ADD, (0, 1), src=(half, 0), iter_out=2)  # src 0 + half: banks 0 and 1
    b.alu(AluOp.ADD, (0, 1), src=(half, 0), iter_out=2, imm=1)  # immediate: src ignored
    b.gemm((2, 3), iter_out=1, dst=(half, 0), iter_in=2)  # one outer iteration: factor unused
    b.gemm((2, 3), iter_out=2, dst=(half, 0))          # half+1+half >= D: both
    b.gemm((1, 1), iter_out=3)                         # no micro-ops: empty
    got = [bank_set(cfg, i, shadow) for i in b.insns[1:]]
    assert got == [0b01, 0b01, BOTH_BANKS, 0b10, 0b11, 0b01, 0b10, BOTH_BANKS, 0]
    # Unknown micro-ops (no DRAM image): both banks.
    assert bank_set(cfg, b.insns[1], UopShadow(cfg)) == BOTH_BANKS
    assert bank_set(cfg, b.insns[1], None) == BOTH_BANKS


def test_lanes_overlap_only_on_disjoint_banks():
    cfg = load_config("tiny")
    half = cfg.acc_depth // 2
    same = _lane_program(cfg, 20)
    other = _lane_program(cfg, half + 20)
    t_same = estimate_cycles(cfg, same.encode(), dram=same.dram)
    t_other = estimate_cycles(cfg, other.encode(), dram=other.dram)
    # 4000 GEMM issue cycles, then (same bank) 100 ALU cycles after the GEMM's last write.
    assert t_same.cycles - t_other.cycles == pytest.approx(100 + 7, abs=3)
    alu_same = next(r for r in t_same.insns if r.kind == "ALU.ADD")
    alu_other = next(r for r in t_other.insns if r.kind == "ALU.ADD")
    gemm = next(r for r in t_other.insns if r.kind == "GEMM")
    assert (gemm.lane, alu_other.lane) == ("G", "A")
    assert alu_other.issue < gemm.issue + gemm.work        # ran during the GEMM
    assert alu_same.issue > gemm.issue + gemm.work         # waited for its last write
    # Without the DRAM image the model cannot see the banks: no overlap.
    assert estimate_cycles(cfg, other.encode()).cycles == t_same.cycles


def test_deferred_push_waits_for_everything_before_it():
    """A token pushed by the ALU pass (other bank) fires only once the GEMM dispatched
    before it has completed too, so the STORE starts after both."""
    cfg = load_config("tiny")
    half = cfg.acc_depth // 2
    p = _lane_program(cfg, half + 20)
    rep = estimate_cycles(cfg, p.encode(), dram=p.dram)
    gemm = next(r for r in rep.insns if r.kind == "GEMM")
    alu = next(r for r in rep.insns if r.kind == "ALU.ADD")
    store = next(r for r in rep.insns if r.kind == "STORE.OUT")
    assert alu.done >= gemm.done and store.start + store.token_stall > gemm.done


def test_gemm_program_hides_the_alu_epilogue():
    """With two threads the ALU passes run in lane A during the next tile's GEMMs: the
    estimate is close to the GEMM work alone (one thread: in series)."""
    cfg = load_config("tiny")
    rng = np.random.default_rng(5)
    a = rng.integers(-128, 128, (256, 64), dtype=np.int8)
    w = rng.integers(-128, 128, (32, 64), dtype=np.int8)
    progs = {t: gemm_program(cfg, a, w, shift=6, clip=(0, 127), threads=t) for t in (1, 2)}
    cyc = {t: estimate_cycles(cfg, p.encode(), dram=p.dram).cycles for t, p in progs.items()}
    gemm_work = 256 * (32 // cfg.block_out) * (64 // cfg.block_in)
    assert cyc[2] < 1.15 * gemm_work < cyc[1]
