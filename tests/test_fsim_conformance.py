"""VTA's own conformance checks (docs/vta-isa.md), run on the functional simulator.

Every program is built with ProgramBuilder (directly or through sim/programs.py) and its result
compared with plain numpy computed here, on presets pynq-z1 and tiny.
"""

import numpy as np
import pytest

from pyvta.compiler.builder import ProgramBuilder
from pyvta.compiler.qops import conv2d_int32
from pyvta.hw.config import load_config
from pyvta.hw.isa import AluOp, MemType, Opcode
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import (alu_program, gemm_program, numpy_reference,
                                padded_load_program)

PRESETS = ["pynq-z1", "tiny"]


@pytest.fixture(params=PRESETS)
def cfg(request):
    return load_config(request.param)


def run(b: ProgramBuilder):
    return FunctionalSimulator(b.cfg, b.dram).run(b.encode())


def acc_tiles(cfg, rng, rows, lo, hi):
    return rng.integers(lo, hi, (rows, cfg.batch, cfg.block_out)).astype(np.int32)


def run_alu(cfg, x, ops, y=None):
    b, out, rows = alu_program(cfg, x, ops, y)
    run(b)
    return b.read(MemType.OUT, out, rows).reshape(x.shape)


# ------------------------------------------------------------------------------------------------
def test_load_acc_shr0_store_truncates(cfg):
    rng = np.random.default_rng(1)
    x = acc_tiles(cfg, rng, 40, -(1 << 31), 1 << 31)
    got = run_alu(cfg, x, [(AluOp.SHR, 0)])
    expected = (x & 0xFF).astype(np.uint8).view(np.int8)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("pad", [(2, 0, 0, 0), (0, 0, 2, 0), (0, 2, 0, 0), (0, 0, 0, 2),
                                 (1, 1, 1, 1)])
@pytest.mark.parametrize("mem", [MemType.INP, MemType.ACC])
def test_padded_load(cfg, pad, mem):
    rng = np.random.default_rng(2)
    rows, cols = 3, 5
    if mem is MemType.INP:
        x = rng.integers(-128, 128, (rows, cols, cfg.batch, cfg.block_in)).astype(np.int8)
    else:
        x = rng.integers(-128, 128, (rows, cols, cfg.batch, cfg.block_out)).astype(np.int32)
    b, out, (prow, pcol) = padded_load_program(cfg, x, pad, mem)
    run(b)
    got = b.read(MemType.OUT, out, prow * pcol).reshape(prow, pcol, cfg.batch, cfg.block_out)
    y0, y1, x0, x1 = pad
    expected = np.zeros((prow, pcol, cfg.batch, cfg.block_out), np.int8)
    expected[y0:y0 + rows, x0:x0 + cols] = x.astype(np.int8)
    np.testing.assert_array_equal(got, expected)


def _gemm_shr_max_min(cfg, a_t, w_t):
    """One tile: blocks of INP (m, k) x WGT (n, k) -> ACC (m, n), then SHR 8, MAX 0, MIN 127."""
    m, k = a_t.shape[:2]
    n = w_t.shape[0]
    b = ProgramBuilder(cfg, Dram(1 << 20))
    a_elem = b.put(MemType.INP, a_t)
    w_elem = b.put(MemType.WGT, w_t)
    out_elem = b.reserve(MemType.OUT, m * n)
    # Micro-ops over (row, column) output pairs; the reduction over k runs in the inner loop.
    gemm_k = b.uop_kernel([(i * n + j, i * k, j * k) for i in range(m) for j in range(n)])
    alu_k = b.uop_kernel([(0, 0, 0)])
    g = b.load_uops(gemm_k, 0)
    a = b.load_uops(alu_k, len(gemm_k))
    b.load(MemType.INP, 0, a_elem, 1, m * k)
    b.load(MemType.WGT, 0, w_elem, 1, n * k, push_next_dep=True)
    b.gemm(g, reset=True)
    b.gemm(g, iter_in=k, src=(0, 1), wgt=(0, 1), pop_prev_dep=True)
    for op, imm in ((AluOp.SHR, 8), (AluOp.MAX, 0), (AluOp.MIN, 127)):
        b.alu(op, a, iter_out=m * n, dst=(1, 0), imm=imm, push_next_dep=(op is AluOp.MIN))
    b.store(0, out_elem, 1, m * n, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    run(b)
    return b.read(MemType.OUT, out_elem, m * n).reshape(m, n, cfg.batch, cfg.block_out)


def test_gemm_blocks_shr_max_min_plain(cfg):
    rng = np.random.default_rng(3)
    m, k, n = 4, 3, 2
    a_t = rng.integers(-128, 128, (m, k, cfg.batch, cfg.block_in)).astype(np.int8)
    w_t = rng.integers(-128, 128, (n, k, cfg.block_out, cfg.block_in)).astype(np.int8)
    got = _gemm_shr_max_min(cfg, a_t, w_t)
    acc = np.einsum("mkbi,nkoi->mnbo", a_t.astype(np.int64), w_t.astype(np.int64))
    expected = np.clip(acc >> 8, 0, 127).astype(np.int8)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("threads,order,nt", [(1, "nm", 2), (2, "nm", 2), (2, "mn", 2),
                                              (2, "nm", 4), (1, "mn", 4)])
def test_gemm_shr_max_min_virtual_threads(cfg, threads, order, nt):
    rng = np.random.default_rng(4)
    m, k, n = 6 * cfg.batch, 4 * cfg.block_in, 4 * cfg.block_out
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    # Small tiles force several output tiles and reduction chunks through both threads;
    # nt = 4 (the whole width) stores each tile as one contiguous row.
    prog = gemm_program(cfg, a, w, shift=8, clip=(0, 127), threads=threads,
                        tile=(2, nt, 2, order))
    if nt == 4:
        assert any(i.opcode is Opcode.STORE and i.y_size == 1 and i.x_size == 2 * nt
                   for i in prog.insns)
    FunctionalSimulator(cfg, prog.dram).run(prog.encode())
    expected = np.clip((a.astype(np.int64) @ w.astype(np.int64).T) >> 8, 0, 127)
    np.testing.assert_array_equal(prog.read_output(), expected.astype(np.int8))


# ------------------------------------------------------------------------------------------------
def _np_alu(op, a, b):
    a = a.astype(np.int64)
    b = np.asarray(b, np.int64)
    if op is AluOp.MIN:
        r = np.minimum(a, b)
    elif op is AluOp.MAX:
        r = np.maximum(a, b)
    elif op is AluOp.ADD:
        r = a + b
    elif op is AluOp.MUL:
        r = a * b
    else:  # SHR by a small amount: negative means left
        r = np.where(b >= 0, a >> np.abs(b), a << np.abs(b))
    return r.astype(np.int32)  # wrap-around


@pytest.mark.parametrize("name,op,operand", [
    ("shl_imm", AluOp.SHR, "neg_imm"), ("max_imm", AluOp.MAX, "imm"),
    ("max_tensor", AluOp.MAX, "tensor"), ("add_imm", AluOp.ADD, "imm"),
    ("add_tensor", AluOp.ADD, "tensor"), ("shr_imm", AluOp.SHR, "imm"),
    ("mul_imm", AluOp.MUL, "imm"), ("mul_tensor", AluOp.MUL, "tensor"),
    ("min_imm", AluOp.MIN, "imm"), ("min_tensor", AluOp.MIN, "tensor")])
def test_alu_ops(cfg, name, op, operand):
    rng = np.random.default_rng(abs(hash(name)) % 1000)
    x = acc_tiles(cfg, rng, 24, -16, 16)
    y = acc_tiles(cfg, rng, 24, -16, 16)
    imm = int(rng.integers(1, 5))
    if operand == "tensor":
        got = run_alu(cfg, x, [(op, "tensor")], y)
        expected = _np_alu(op, x, y)
    else:
        imm = -imm if operand == "neg_imm" else imm
        got = run_alu(cfg, x, [(op, imm)])
        expected = _np_alu(op, x, imm)
    np.testing.assert_array_equal(got, expected.astype(np.int8))


def test_relu_clip(cfg):
    rng = np.random.default_rng(5)
    x = acc_tiles(cfg, rng, 30, -256, 256)
    got = run_alu(cfg, x, [(AluOp.MAX, 0), (AluOp.MIN, 127)])
    np.testing.assert_array_equal(got, np.clip(x, 0, 127).astype(np.int8))


def test_shift_and_scale(cfg):
    rng = np.random.default_rng(6)
    x = acc_tiles(cfg, rng, 30, -256, 256)
    imm1, imm2 = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    got = run_alu(cfg, x, [(AluOp.ADD, imm1), (AluOp.SHR, imm2)])
    np.testing.assert_array_equal(got, ((x.astype(np.int64) + imm1) >> imm2).astype(np.int8))


# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("threads,bias_mode", [(1, "alu"), (2, "alu"), (1, "gemm"),
                                               (2, "gemm")])
def test_gemm_128_bias_shift_clip(cfg, threads, bias_mode):
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, (128, 128), dtype=np.int8)
    w = rng.integers(-128, 128, (128, 128), dtype=np.int8)
    bias = rng.integers(-(1 << 14), 1 << 14, 128).astype(np.int32)
    prog = gemm_program(cfg, a, w, bias, shift=8, clip=(0, 127), threads=threads,
                        bias_mode=bias_mode)
    counters = FunctionalSimulator(cfg, prog.dram).run(prog.encode())
    acc = a.astype(np.int64) @ w.astype(np.int64).T + bias
    np.testing.assert_array_equal(prog.read_output(),
                                  np.clip(acc >> 8, 0, 127).astype(np.int8))
    # The folded bias is one extra reduction block; the ALU way adds with a tensor operand.
    extra = cfg.block_in if bias_mode == "gemm" else 0
    assert counters.macs == prog.macs == 128 * 128 * (128 + extra)
    tensor_adds = [i for i in prog.insns if i.opcode.name == "ALU" and not i.use_imm]
    assert bool(tensor_adds) == (bias_mode == "alu")
    if threads == 2:
        # The two virtual threads really overlap: a load waits on a compute->load token.
        assert any(i.pop_next_dep for i in prog.insns if i.opcode.name == "LOAD"
                   and i.memory_type in (MemType.INP, MemType.WGT))


def test_resnet18_c2_conv_rows(cfg):
    """C2 (56x56x64 -> 64, 3x3, stride 1, pad 1) for 4 output rows, as im2col GEMM + bias +
    >> 8 + clip [0, 127], checked against a direct convolution."""
    rng = np.random.default_rng(8)
    c, h, wd, o, rows = 64, 56, 56, 64, 4
    x = rng.integers(-128, 128, (1, c, h, wd), dtype=np.int8)
    wt = rng.integers(-128, 128, (o, c, 3, 3), dtype=np.int8)
    bias = rng.integers(-(1 << 12), 1 << 12, o).astype(np.int32)
    xp = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    # im2col for output rows 0..rows-1: K ordered as (kh, kw, c).
    cols = np.stack([xp[:, r + dy, dx:dx + wd] for r in range(rows)
                     for dy in range(3) for dx in range(3)])          # (rows*9, c, wd)
    cols = cols.reshape(rows, 9, c, wd).transpose(0, 3, 1, 2).reshape(rows * wd, 9 * c)
    wmat = wt.transpose(0, 2, 3, 1).reshape(o, 9 * c)
    prog = gemm_program(cfg, cols, wmat, bias, shift=8, clip=(0, 127), threads=2)
    FunctionalSimulator(cfg, prog.dram).run(prog.encode())
    ref = conv2d_int32(x, wt, pads=(1, 1, 1, 1))[0, :, :rows, :].astype(np.int64)
    ref = np.clip((ref + bias[:, None, None]) >> 8, 0, 127).astype(np.int8)
    got = prog.read_output().reshape(rows, wd, o).transpose(2, 0, 1)
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(prog.read_output(),
                                  numpy_reference(cols, wmat, bias, 8, (0, 127)))


# ------------------------------------------------------------------------------------------------
def _acc_program(cfg, x):
    """A builder with ``x`` (rows, BATCH, BLOCK_OUT) int32 loaded at ACC 0."""
    b = ProgramBuilder(cfg, Dram(1 << 20))
    x_elem = b.put(MemType.ACC, x)
    out_elem = b.reserve(MemType.OUT, x.shape[0])
    return b, x_elem, out_elem


def _finish_store(b, out_elem, sram, count):
    b.store(sram, out_elem, 1, count, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    run(b)
    return b.read(MemType.OUT, out_elem, count)


def test_alu_max_pool_reduction(cfg):
    """Repeated destinations: 2x2 max pooling of an 8x8 map of ACC elements into 4x4."""
    rng = np.random.default_rng(9)
    x = acc_tiles(cfg, rng, 64 + 16, -1000, 1000)
    x[64:] = -(1 << 31)  # the pooled outputs start at the smallest value
    b, x_elem, out_elem = _acc_program(cfg, x)
    b.load(MemType.ACC, 0, x_elem, 1, 80)
    # dst = 64 + 4*oy + ox; src = 8*(2*oy + dy) + 2*ox + dx. Loops: oy (out), ox (in);
    # micro-ops enumerate the window (dy, dx), all writing the same destination.
    k = b.load_uops(b.uop_kernel([(64, 8 * dy + dx, 0) for dy in range(2) for dx in range(2)]))
    b.alu(AluOp.MAX, k, iter_out=4, iter_in=4, dst=(4, 1), src=(16, 2), push_next_dep=True)
    got = _finish_store(b, out_elem, 64, 16).reshape(4, 4, cfg.batch, cfg.block_out)
    grid = x[:64].reshape(4, 2, 4, 2, cfg.batch, cfg.block_out)
    np.testing.assert_array_equal(got, grid.max(axis=(1, 3)).astype(np.int8))


def test_alu_order_dependent(cfg):
    """src reads an earlier iteration's dst: a running sum acc[i] += acc[i-1] in order."""
    rng = np.random.default_rng(10)
    n = 20
    x = acc_tiles(cfg, rng, n, -50, 50)
    b, x_elem, out_elem = _acc_program(cfg, x)
    b.load(MemType.ACC, 0, x_elem, 1, n)
    k = b.load_uops(b.uop_kernel([(1, 0, 0)]))
    b.alu(AluOp.ADD, k, iter_out=n - 1, dst=(1, 0), src=(1, 0), push_next_dep=True)
    # Element 0 is only loaded (LOAD ACC does not write OUT): store elements 1..n-1.
    got = _finish_store(b, out_elem, 1, n - 1).reshape(x[1:].shape)
    np.testing.assert_array_equal(got, np.cumsum(x, axis=0)[1:].astype(np.int8))
    # And a MUL chain whose values overflow int32 along the way.
    b, x_elem, out_elem = _acc_program(cfg, x)
    b.load(MemType.ACC, 0, x_elem, 1, n)
    k = b.load_uops(b.uop_kernel([(1, 0, 0)]))
    b.alu(AluOp.MUL, k, iter_out=n - 1, dst=(1, 0), src=(1, 0), push_next_dep=True)
    got = _finish_store(b, out_elem, 1, n - 1).reshape(x[1:].shape)
    expected = x.astype(np.int64).copy()
    for i in range(1, n):
        expected[i] = ((expected[i] * expected[i - 1]) + (1 << 31)) % (1 << 32) - (1 << 31)
    np.testing.assert_array_equal(got, expected[1:].astype(np.int8))


def test_int32_wrap_around(cfg):
    """ALU ADD/MUL and GEMM accumulation wrap around at 32 bits; SHR uses 6-bit amounts."""
    rng = np.random.default_rng(11)
    x = acc_tiles(cfg, rng, 8, (1 << 31) - 100, (1 << 31) - 1)
    got = run_alu(cfg, x, [(AluOp.ADD, 1000), (AluOp.SHR, 20)])
    np.testing.assert_array_equal(
        got, ((x.astype(np.int64) + 1000 - (1 << 32)) >> 20).astype(np.int8))
    got = run_alu(cfg, x, [(AluOp.MUL, 3)])
    wrapped = (x.astype(np.int64) * 3 + (1 << 31)) % (1 << 32) - (1 << 31)
    np.testing.assert_array_equal(got, wrapped.astype(np.int8))
    # SHR by 33 is SHR by -31 (low 6 bits, signed): a left shift by 31.
    got = run_alu(cfg, x, [(AluOp.SHR, 33), (AluOp.SHR, 24)])
    expected = ((x.astype(np.int64) << 31) + (1 << 31)) % (1 << 32) - (1 << 31)
    np.testing.assert_array_equal(got, (expected >> 24).astype(np.int8))

    # GEMM: a bias near 2**31 plus positive products wraps negative.
    a = np.full((cfg.batch, cfg.block_in), 127, np.int8)
    w = np.full((cfg.block_out, cfg.block_in), 127, np.int8)
    bias = np.full((1, cfg.batch, cfg.block_out), (1 << 31) - 10, np.int32)
    b = ProgramBuilder(cfg, Dram(1 << 20))
    a_e, w_e, b_e = b.put(MemType.INP, a), b.put(MemType.WGT, w), b.put(MemType.ACC, bias)
    out_elem = b.reserve(MemType.OUT, 1)
    k = b.load_uops(b.uop_kernel([(0, 0, 0)]))
    b.load(MemType.ACC, 0, b_e, 1, 1)
    b.load(MemType.INP, 0, a_e, 1, 1)
    b.load(MemType.WGT, 0, w_e, 1, 1, push_next_dep=True)
    b.gemm(k, pop_prev_dep=True)
    b.alu(AluOp.SHR, k, imm=24, push_next_dep=True)
    got = _finish_store(b, out_elem, 0, 1)
    total = (1 << 31) - 10 + 127 * 127 * cfg.block_in
    expected = ((total + (1 << 31)) % (1 << 32) - (1 << 31)) >> 24
    np.testing.assert_array_equal(got, np.full(cfg.batch * cfg.block_out, expected, np.int8))


# ------------------------------------------------------------------------------------------------
# sim/programs.py: the tiled GEMM on awkward shapes, its structure, and its argument checks
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1, 1), (37, 70, 45), (5, 3, 70), (200, 40, 17)])
@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_program_any_shape(cfg, shape, threads):
    rng = np.random.default_rng(sum(shape) + threads)
    m, k, n = shape
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    bias = rng.integers(-3000, 3000, n).astype(np.int32)
    prog = gemm_program(cfg, a, w, bias, shift=5, clip=None, threads=threads)
    FunctionalSimulator(cfg, prog.dram).run(prog.encode())
    np.testing.assert_array_equal(prog.read_output(), numpy_reference(a, w, bias, 5, None))


def test_gemm_program_structure():
    """Large tiles per instruction, VTA's dst rule inside every GEMM, tokens balanced."""
    cfg = load_config("pynq-z1")
    rng = np.random.default_rng(12)
    a = rng.integers(-128, 128, (784, 1152), dtype=np.int8)
    w = rng.integers(-128, 128, (128, 1152), dtype=np.int8)
    prog = gemm_program(cfg, a, w, threads=2, clip=(0, 127), shift=8)
    gemms = [i for i in prog.insns if i.opcode.name == "GEMM" and not i.reset_reg]
    iters = [i.iter_out * i.iter_in * (i.uop_end - i.uop_bgn) for i in gemms]
    assert min(iters) >= 256 and sum(iters) == 784 * 8 * 72
    assert len(prog.insns) < 1000
    assert prog.tiling.est_efficiency > 0.85
    # dst differs from the previous two within each GEMM's micro-op sequence.
    from pyvta.hw.isa import decode_uops
    uop_load = prog.insns[0]
    uops = decode_uops(prog.dram.read(uop_load.dram_base * 4, uop_load.x_size * 4).tobytes(), cfg)
    for g in gemms[:20]:
        d = np.array([u.dst_idx for u in uops[g.uop_bgn:g.uop_end]])
        seq = (d[None, None, :] + np.arange(g.iter_out)[:, None, None] * g.dst_factor_out
               + np.arange(g.iter_in)[None, :, None] * g.dst_factor_in).reshape(-1)
        assert not np.any(seq[1:] == seq[:-1]) and not np.any(seq[2:] == seq[:-2])


@pytest.mark.parametrize("kwargs,match", [
    (dict(a=np.zeros((4, 4), np.int16)), r"a must have dtype int8, not int16"),
    (dict(a=np.zeros(4, np.int8)), r"a must be a 2-D matrix"),
    (dict(w=np.zeros((4, 5), np.int8)), r"w must have K=4 columns like a, not 5"),
    (dict(bias=np.zeros(3, np.int32)), r"bias must be an int32 vector of shape \(4,\)"),
    (dict(shift=32), r"shift must be an integer in \[0, 31\], not 32"),
    (dict(clip=(5, 1)), r"clip must be \(lo, hi\) with -128 <= lo <= hi <= 127"),
    (dict(threads=3), r"threads must be 1 or 2, not 3"),
    (dict(tile=(0, 1, 1)), r"tile mt must be at least 1, not 0"),
    (dict(tile="big"), r"tile must be None, .resident., .tiled. or \(mt, nt, kc, ...\), not .big."),
    (dict(tile=(1,)), r"tile must be three integers"),
    (dict(tile=(1, 1, 1, "km")), r"tile order must be 'nm' or 'mn', not 'km'"),
    (dict(bias_mode="fast"), r"bias_mode must be 'auto', 'gemm' or 'alu', not 'fast'"),
    (dict(bias=np.full(4, 1 << 20, np.int32), bias_mode="gemm"),
     r"bias values in \[1048576, 1048576\] do not fit one GEMM block at BLOCK_IN=8"),
])
def test_gemm_program_bad_arguments(kwargs, match):
    from pyvta.sim.programs import ProgramError
    args = dict(a=np.zeros((4, 4), np.int8), w=np.zeros((4, 4), np.int8))
    args.update(kwargs)
    with pytest.raises(ProgramError, match=match):
        gemm_program("tiny", **args)


def test_gemm_program_tile_too_big():
    from pyvta.sim.programs import ProgramError
    a = np.zeros((512, 512), np.int8)
    with pytest.raises(ProgramError, match=r"tile mt\*kc=.* INP elements exceeds the 128"):
        gemm_program("tiny", a, a, tile=(64, 4, 64))


def test_gemm_program_reuses_resident_weights(cfg):
    """With the whole reduction in one chunk, each thread loads its weights once."""
    rng = np.random.default_rng(13)
    m, k, n = 8 * cfg.batch, 4 * cfg.block_in, 4 * cfg.block_out
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    prog = gemm_program(cfg, a, w, threads=2, tile=(2, 4, 4))
    wgt_loads = [i for i in prog.insns if i.opcode.name == "LOAD" and i.memory_type is MemType.WGT]
    inp_loads = [i for i in prog.insns if i.opcode.name == "LOAD" and i.memory_type is MemType.INP]
    assert len(wgt_loads) == 2 and len(inp_loads) == 4
    FunctionalSimulator(cfg, prog.dram).run(prog.encode())
    np.testing.assert_array_equal(prog.read_output(), numpy_reference(a, w))


def test_gemm_program_large_bias_falls_back_to_alu(cfg):
    rng = np.random.default_rng(15)
    a = rng.integers(-128, 128, (20, 40), dtype=np.int8)
    w = rng.integers(-128, 128, (20, 40), dtype=np.int8)
    # Too large to fold into a GEMM block, and close enough to 2**31 to wrap when added.
    bias = rng.integers((1 << 31) - 200_000, (1 << 31) - 1, 20).astype(np.int32)
    prog = gemm_program(cfg, a, w, bias, shift=20, clip=None)
    assert any(i.opcode.name == "ALU" and not i.use_imm for i in prog.insns)
    FunctionalSimulator(cfg, prog.dram).run(prog.encode())
    np.testing.assert_array_equal(prog.read_output(), numpy_reference(a, w, bias, 20, None))


def test_conformance_suite_runs(cfg):
    """The suite other targets replay: every program runs on fsim (under a random module
    interleaving) and really stores data. Its results are checked against numpy above."""
    from pyvta.sim.programs import conformance_suite
    suite = conformance_suite(cfg)
    names = [name for name, _ in suite]
    assert len(names) == len(set(names)) >= 30
    for name, b in suite:
        dram = Dram(base=b.dram.base, data=b.dram.tobytes())
        counters = FunctionalSimulator(cfg, dram, schedule_seed=len(name)).run(b.encode())
        assert counters.insns["STORE"] >= 1 and counters.bytes["OUT"] > 0, name
        assert not np.array_equal(dram.mem, b.dram.mem), name
    small = [name for name, _ in conformance_suite(cfg, large=False)]
    assert "gemm_128_bias_shift_clip_2thread" in names and \
        "gemm_128_bias_shift_clip_2thread" not in small


# ------------------------------------------------------------------------------------------------
# sim/gemm_resident.py: the "everything on chip" schedule
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(128, 128, 128), (40, 64, 48), (3, 40, 33), (17, 16, 64)])
def test_gemm_resident_schedule_matches_numpy(shape):
    cfg = load_config("pynq-z1")
    rng = np.random.default_rng(sum(shape))
    m, k, n = shape
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-128, 128, (n, k), dtype=np.int8)
    bias = rng.integers(-4096, 4096, n).astype(np.int32)
    prog = gemm_program(cfg, a, w, bias, shift=8, clip=(0, 127), tile="resident",
                        bias_mode="alu")
    assert prog.tiling.order == "resident"
    FunctionalSimulator(cfg, prog.dram).run(prog.encode())
    np.testing.assert_array_equal(prog.read_output(), numpy_reference(a, w, bias, 8, (0, 127)))


def test_gemm_program_picks_the_resident_schedule_for_128():
    """128^3 with bias, shift, clip (the bench's program): the model finds the resident
    schedule faster than the tiled plan; a GEMM too big for the buffers stays tiled."""
    cfg = load_config("pynq-z1")
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (128, 128), dtype=np.int8)
    bias = rng.integers(-4096, 4096, 128).astype(np.int32)
    prog = gemm_program(cfg, a, a, bias, shift=8, clip=(0, 127), bias_mode="alu")
    assert prog.tiling.order == "resident"
    big = np.zeros((4096, 64), np.int8)
    assert gemm_program(cfg, big, a[:, :64], threads=2).tiling.order != "resident"


def test_gemm_resident_schedule_refuses_what_does_not_fit():
    from pyvta.sim.programs import ProgramError
    a = np.zeros((4096, 64), np.int8)
    with pytest.raises(ProgramError, match="resident schedule needs two threads"):
        gemm_program("pynq-z1", a, a[:64], tile="resident")
    with pytest.raises(ProgramError, match="resident schedule needs two threads"):
        gemm_program("pynq-z1", a[:64], a[:64], tile="resident", threads=1)
