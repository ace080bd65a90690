"""The random program generator: legal, deterministic, guard bytes intact, varied."""

import collections

import numpy as np
import pytest

from pyvta.hw.config import load_config
from pyvta.hw.isa import AluOp, MemType, Opcode
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator, route
from pyvta.sim.randprog import random_program


def run(prog):
    dram = prog.fresh_dram()
    counters = FunctionalSimulator(prog.cfg, dram).run(prog.encode())
    return dram, counters


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
def test_many_seeds_run_clean(preset):
    changed = 0
    for seed in range(40):
        prog = random_program(preset, seed, work=[1, 300, 3000][seed % 3],
                              dst_rule=seed % 4 == 0, dram_base=4096 * (seed % 3))
        dram, counters = run(prog)
        assert prog.check_guards(dram) == []
        assert counters.insns["FINISH"] == 1
        # Nothing outside the written regions changed.
        before, after = prog.dram.mem, dram.mem
        diff = np.flatnonzero(before != after) + prog.dram.base
        inside = np.zeros(diff.size, bool)
        for addr, nbytes in prog.written:
            inside |= (diff >= addr) & (diff < addr + nbytes)
        assert inside.all(), f"seed {seed}: writes outside the declared regions"
        changed += diff.size > 0
    assert changed >= 30  # stores really write


def test_deterministic():
    for seed in (0, 7, 123):
        a = random_program("tiny", seed, work=2000)
        b = random_program("tiny", seed, work=2000)
        assert a.encode() == b.encode()
        assert a.dram.tobytes() == b.dram.tobytes()
        assert a.written == b.written
        assert run(a)[0].tobytes() == run(b)[0].tobytes()
    assert random_program("tiny", 1).encode() != random_program("tiny", 2).encode()


def test_tokens_balanced_and_bounded():
    """Every pop has an earlier push (program order) and never more than `slots` outstanding."""
    pairs = {("compute", "pop_prev_dep"): ("load", "push_next_dep"),
             ("load", "pop_next_dep"): ("compute", "push_prev_dep"),
             ("store", "pop_prev_dep"): ("compute", "push_next_dep"),
             ("compute", "pop_next_dep"): ("store", "push_prev_dep")}
    for seed in range(20):
        prog = random_program("tiny", seed, work=1500)
        pushed = collections.Counter()
        popped = collections.Counter()
        for insn in prog.insns:
            module = route(insn)
            for flag in ("push_prev_dep", "push_next_dep"):
                if getattr(insn, flag):
                    pushed[(module, flag)] += 1
            for flag in ("pop_prev_dep", "pop_next_dep"):
                if getattr(insn, flag):
                    src = pairs[(module, flag)]
                    popped[src] += 1
                    assert popped[src] <= pushed[src], f"seed {seed}: pop before push"
                    assert pushed[src] - popped[src] < prog.cfg.dep_queue_depth
        assert pushed == popped, f"seed {seed}: unmatched tokens"
        assert prog.insns[-1].opcode is Opcode.FINISH


def test_size_range():
    small = random_program("tiny", 3, work=1)
    big = random_program("tiny", 3, work=20000)
    assert len(small.insns) < 60 and small.work < 2000
    assert big.work > 10000 and len(big.insns) > len(small.insns)
    dram, counters = run(big)
    assert big.check_guards(dram) == []
    assert counters.gemm_uops + counters.alu_uops > 5000


def test_features_covered():
    seen = collections.Counter()
    for seed in range(30):
        prog = random_program("tiny", seed, work=2000)
        seen[f"slots{prog.slots}"] += 1
        for insn in prog.insns:
            op = insn.opcode
            if op in (Opcode.LOAD, Opcode.STORE):
                seen[f"{op.name}.{insn.memory_type.name}"] += 1
                if insn.x_size == 0:
                    seen["sync"] += 1
                if insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1:
                    seen[f"pad.{insn.memory_type.name}"] += 1
            elif op is Opcode.GEMM:
                seen["GEMM.reset" if insn.reset_reg else "GEMM"] += 1
            elif op is Opcode.ALU:
                seen[f"ALU.{insn.alu_opcode.name}.{'imm' if insn.use_imm else 'tensor'}"] += 1
                if insn.reset_reg:
                    seen["ALU.reset"] += 1
    needed = ["slots1", "slots2", "LOAD.INP", "LOAD.WGT", "LOAD.UOP", "LOAD.ACC", "STORE.OUT",
              "sync", "pad.INP", "pad.ACC", "GEMM", "GEMM.reset", "ALU.reset"]
    needed += [f"ALU.{op.name}.{kind}" for op in AluOp for kind in ("imm", "tensor")]
    missing = [n for n in needed if not seen[n]]
    assert not missing, missing


def test_guard_check_detects_damage():
    prog = random_program("tiny", 5, work=500)
    dram, _ = run(prog)
    addr, nbytes = prog.written[0]
    dram.write(addr + nbytes, np.array([dram.read(addr + nbytes, 1)[0] ^ 0xFF], np.uint8))
    problems = prog.check_guards(dram.tobytes())
    assert len(problems) == 1 and "seed 5" in problems[0]


def test_dst_rule():
    for seed in range(10):
        prog = random_program("tiny", seed, work=2000, dst_rule=True)
        run(prog)
        # Check the rule over the compute stream of GEMM/ALU destinations.
        uops = {}
        last = []
        for insn in prog.insns:
            if insn.opcode is Opcode.LOAD and insn.memory_type is MemType.UOP and insn.x_size:
                words = prog.dram.read(insn.dram_base * 4, insn.x_size * 4).view("<u4")
                for k, w in enumerate(words):
                    uops[insn.sram_base + k] = int(w) & ((1 << prog.cfg.log_acc_depth) - 1)
            elif insn.opcode in (Opcode.GEMM, Opcode.ALU):
                for i in range(insn.iter_out):
                    for j in range(insn.iter_in):
                        for k in range(insn.uop_bgn, insn.uop_end):
                            d = uops[k] + i * insn.dst_factor_out + j * insn.dst_factor_in
                            assert d not in last[-2:], f"seed {seed}: dst {d} repeats"
                            last.append(d)


@pytest.mark.parametrize("kwargs,match", [
    (dict(work=0), "work must be a positive integer"),
    (dict(threads=3), "threads must be 1, 2 or None"),
    (dict(dram_base=100), "dram_base must be a non-negative multiple of 4096"),
    (dict(window=0), "window must be a positive integer"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        random_program("tiny", 0, **kwargs)


def _indices(uop_vals, insn, f_out, f_in):
    i = np.arange(insn.iter_out)[:, None, None] * f_out
    j = np.arange(insn.iter_in)[None, :, None] * f_in
    return (np.asarray(uop_vals)[None, None, :] + i + j).reshape(-1)


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
def test_reads_only_written_elements(preset):
    """Replays each program symbolically: every micro-op and buffer element a GEMM, ALU or
    STORE reads was written earlier, so uninitialised SRAM (X in RTL) never reaches DRAM."""
    from pyvta.hw.isa import insn_layout
    for seed in range(25):
        prog = random_program(preset, seed, work=1500)
        cfg = prog.cfg
        lay = insn_layout(cfg).uop
        written = {m: np.zeros(d, bool) for m, d in (
            ("UOP", cfg.uop_depth), ("INP", cfg.inp_depth), ("WGT", cfg.wgt_depth),
            ("ACC", cfg.acc_depth), ("OUT", cfg.acc_depth))}
        uops = np.zeros((cfg.uop_depth, 3), np.int64)
        for n, insn in enumerate(prog.insns):
            where = f"seed {seed} instruction {n}"
            if insn.opcode is Opcode.LOAD and insn.x_size and insn.y_size:
                mt = insn.memory_type.name
                rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
                cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
                written[mt][insn.sram_base:insn.sram_base + rows * cols] = True
                if mt == "UOP":
                    words = prog.dram.read(insn.dram_base * 4, insn.x_size * 4).view("<u4")
                    for f, name in enumerate(("dst_idx", "src_idx", "wgt_idx")):
                        off, width = lay[name]
                        uops[insn.sram_base:insn.sram_base + insn.x_size, f] = \
                            (words.astype(np.int64) >> off) & ((1 << width) - 1)
            elif insn.opcode in (Opcode.GEMM, Opcode.ALU):
                k = slice(insn.uop_bgn, insn.uop_end)
                assert written["UOP"][k].all(), f"{where}: unloaded micro-op"
                dst = _indices(uops[k, 0], insn, insn.dst_factor_out, insn.dst_factor_in)
                src = _indices(uops[k, 1], insn, insn.src_factor_out, insn.src_factor_in)
                if insn.reset_reg:
                    written["ACC"][dst] = True
                elif insn.opcode is Opcode.GEMM:
                    wgt = _indices(uops[k, 2], insn, insn.wgt_factor_out, insn.wgt_factor_in)
                    assert written["ACC"][dst].all(), f"{where}: reads unwritten ACC"
                    assert written["INP"][src].all(), f"{where}: reads unwritten INP"
                    assert written["WGT"][wgt].all(), f"{where}: reads unwritten WGT"
                else:
                    assert written["ACC"][dst].all(), f"{where}: reads unwritten ACC"
                    if not insn.use_imm:
                        assert written["ACC"][src].all(), f"{where}: reads unwritten ACC src"
                written["OUT"][dst] = True
            elif insn.opcode is Opcode.STORE and insn.x_size and insn.y_size:
                n_el = insn.y_size * insn.x_size
                assert written["OUT"][insn.sram_base:insn.sram_base + n_el].all(), \
                    f"{where}: stores unwritten OUT"


# ------------------------------------------------------------------------------------------------
# A deliberately naive interpreter: one Python step per loop iteration, program order.
# Token-legal programs are schedule-independent, so program order is one valid schedule and
# fsim (decoupled modules, vectorised execution) must produce the same DRAM image.
# ------------------------------------------------------------------------------------------------
def _wrap32(v):
    return ((np.asarray(v, np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int64)


def _naive_alu(op, a, b):
    if op is AluOp.MIN:
        return np.minimum(a, b)
    if op is AluOp.MAX:
        return np.maximum(a, b)
    if op is AluOp.ADD:
        return _wrap32(a + b)
    if op is AluOp.MUL:
        return _wrap32(a * b)
    amount = np.asarray(b, np.int64) & 63
    amount = np.where(amount >= 32, amount - 64, amount)
    out = np.where(amount >= 0, a >> np.clip(amount, 0, 63), a << np.clip(-amount, 0, 63))
    return _wrap32(out)


def naive_run(prog):
    from pyvta.hw.isa import insn_layout
    cfg = prog.cfg
    mem = prog.fresh_dram()
    lay = insn_layout(cfg).uop
    b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
    uop = [(0, 0, 0)] * cfg.uop_depth
    inp = np.zeros((cfg.inp_depth, b, bi), np.int64)
    wgt = np.zeros((cfg.wgt_depth, bo, bi), np.int64)
    acc = np.zeros((cfg.acc_depth, b, bo), np.int64)
    out = np.zeros((cfg.acc_depth, b, bo), np.int64)
    shapes = {MemType.INP: (inp, (b, bi), "i1"), MemType.WGT: (wgt, (bo, bi), "i1"),
              MemType.ACC: (acc, (b, bo), "<i4")}
    for insn in prog.insns:
        op = insn.opcode
        if op is Opcode.FINISH:
            break
        if op is Opcode.LOAD and insn.x_size and insn.y_size:
            mt = insn.memory_type
            if mt is MemType.UOP:
                for x in range(insn.x_size):
                    w = int(mem.read((insn.dram_base + x) * 4, 4).view("<u4")[0])
                    uop[insn.sram_base + x] = tuple((w >> lay[n][0]) & ((1 << lay[n][1]) - 1)
                                                    for n in ("dst_idx", "src_idx", "wgt_idx"))
                continue
            buf, shape, dt = shapes[mt]
            eb = np.dtype(dt).itemsize * int(np.prod(shape))
            cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
            rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
            for r in range(rows):
                for c in range(cols):
                    dst = insn.sram_base + r * cols + c
                    y, x = r - insn.y_pad_0, c - insn.x_pad_0
                    if 0 <= y < insn.y_size and 0 <= x < insn.x_size:
                        addr = (insn.dram_base + y * insn.x_stride + x) * eb
                        buf[dst] = mem.read(addr, eb).view(dt).reshape(shape)
                    else:
                        buf[dst] = 0
        elif op is Opcode.STORE and insn.x_size and insn.y_size:
            eb = cfg.out_elem_bytes
            for y in range(insn.y_size):
                for x in range(insn.x_size):
                    val = out[insn.sram_base + y * insn.x_size + x].astype(np.int8)
                    mem.write((insn.dram_base + y * insn.x_stride + x) * eb, val)
        elif op in (Opcode.GEMM, Opcode.ALU):
            for i in range(insn.iter_out):
                for j in range(insn.iter_in):
                    for k in range(insn.uop_bgn, insn.uop_end):
                        d0, s0, w0 = uop[k]
                        d = d0 + i * insn.dst_factor_out + j * insn.dst_factor_in
                        s = s0 + i * insn.src_factor_out + j * insn.src_factor_in
                        if insn.reset_reg:
                            acc[d] = 0
                        elif op is Opcode.GEMM:
                            w = w0 + i * insn.wgt_factor_out + j * insn.wgt_factor_in
                            acc[d] = _wrap32(acc[d] + inp[s] @ wgt[w].T)
                        else:
                            operand = insn.imm if insn.use_imm else acc[s]
                            acc[d] = _naive_alu(insn.alu_opcode, acc[d], operand)
                        out[d] = acc[d]
    return mem


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
def test_fsim_equals_naive_interpreter(preset):
    for seed in range(30):
        prog = random_program(preset, 1000 + seed, work=1000)
        fast, _ = run(prog)
        slow = naive_run(prog)
        diff = np.flatnonzero(fast.mem != slow.mem)
        assert diff.size == 0, (f"seed {1000 + seed}: fsim and the naive interpreter differ at "
                                f"{diff.size} bytes, first at {int(diff[0]) + fast.base:#x}")


# ------------------------------------------------------------------------------------------------
# Schedule independence: fsim's random interleavings as a race detector
# ------------------------------------------------------------------------------------------------
def test_random_programs_are_schedule_independent():
    for seed in range(15):
        prog = random_program("tiny", 2000 + seed, work=1500)
        images = set()
        for schedule in (None, 1, 2, 3):
            dram = prog.fresh_dram()
            FunctionalSimulator(prog.cfg, dram, schedule_seed=schedule).run(prog.encode())
            images.add(dram.tobytes())
        assert len(images) == 1, f"seed {2000 + seed}: result depends on the schedule"


def test_gemm_program_is_schedule_independent():
    from pyvta.sim.programs import gemm_program, numpy_reference
    rng = np.random.default_rng(14)
    a = rng.integers(-128, 128, (40, 48), dtype=np.int8)
    w = rng.integers(-128, 128, (24, 48), dtype=np.int8)
    bias = rng.integers(-999, 999, 24).astype(np.int32)
    prog = gemm_program("tiny", a, w, bias, shift=4, threads=2, tile=(8, 1, 2))
    expected = numpy_reference(a, w, bias, 4)
    for schedule in range(6):
        dram = Dram(base=prog.dram.base, data=prog.dram.tobytes())
        FunctionalSimulator(prog.cfg, dram, schedule_seed=schedule).run(prog.encode())
        np.testing.assert_array_equal(prog.read_output(dram), expected)


def test_schedules_expose_a_missing_war_token():
    """Two loads into the same INP element with no compute->load token between them: the
    second may overwrite the first before the GEMM reads it. Some schedule must show it."""
    from pyvta.compiler.builder import ProgramBuilder
    cfg = load_config("tiny")
    b = ProgramBuilder(cfg, Dram(1 << 14))
    x0 = b.put(MemType.INP, np.full((1, cfg.batch, cfg.block_in), 1, np.int8))
    x1 = b.put(MemType.INP, np.full((1, cfg.batch, cfg.block_in), 2, np.int8))
    eye = b.put(MemType.WGT, np.eye(cfg.block_out, cfg.block_in, dtype=np.int8)[None])
    out = b.reserve(MemType.OUT, 2)
    k0 = b.load_uops(b.uop_kernel([(0, 0, 0)]), 0)
    k1 = b.load_uops(b.uop_kernel([(1, 0, 0)]), 1)
    b.load(MemType.WGT, 0, eye)
    b.load(MemType.INP, 0, x0, push_next_dep=True)
    b.load(MemType.INP, 0, x1, push_next_dep=True)   # races with the first GEMM
    b.gemm(k0, reset=True)
    b.gemm(k1, reset=True)
    b.gemm(k0, pop_prev_dep=True)
    b.gemm(k1, pop_prev_dep=True, push_next_dep=True)
    b.store(0, out, 1, 2, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    results = set()
    for schedule in [None] + list(range(30)):
        dram = Dram(base=0, data=b.dram.tobytes())
        FunctionalSimulator(cfg, dram, schedule_seed=schedule).run(b.encode())
        results.add(dram.read(out * cfg.out_elem_bytes, 2 * cfg.out_elem_bytes).tobytes())
    assert len(results) == 2
