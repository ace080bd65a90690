"""Lowering: every operator and its corner cases, run on the functional simulator and compared
bit for bit with the qops references; program structure (tokens, hazards, relocation)."""

import numpy as np
import pytest

from pyvta.compiler import qops
from pyvta.compiler.lower import (AccelOp, AccelProgram, LoweringError, lower, run_fsim,
                                  supports)
from pyvta.compiler.lower.banks import LaneRuleError, bank_sets, check_lanes
from pyvta.hw.config import list_presets, load_config
from pyvta.hw.isa import MemType, Opcode, decode_program, decode_uops

RNG = np.random.default_rng(1234)


def i8(shape):
    return RNG.integers(-128, 128, shape, dtype=np.int8)


def requant(o, shift=12, pre=0, lo=-128, hi=127, lo_m=1, hi_m=200):
    return qops.Requant(RNG.integers(lo_m, hi_m, o).astype(np.int32), shift, pre, lo, hi)


def check_hazards(prog: AccelProgram, cfg):
    """Every GEMM micro-op writes an accumulator different from the previous two (VTA's rule)."""
    seg = dict(prog.segments)
    uop_dst = np.zeros(cfg.uop_depth, np.int64)
    for insn in decode_program(prog.insns, cfg):
        if insn.opcode is Opcode.LOAD and insn.memory_type is MemType.UOP and insn.x_size:
            off = insn.dram_base * 4
            base = max(o for o in seg if o <= off)
            blob = seg[base][off - base:off - base + 4 * insn.x_size]
            uop_dst[insn.sram_base:insn.sram_base + insn.x_size] = \
                [u.dst_idx for u in decode_uops(blob, cfg)]
        if insn.opcode is Opcode.GEMM and not insn.reset_reg:
            k = uop_dst[insn.uop_bgn:insn.uop_end]
            d = (k[None, None, :] + np.arange(insn.iter_out)[:, None, None] * insn.dst_factor_out
                 + np.arange(insn.iter_in)[None, :, None] * insn.dst_factor_in).reshape(-1)
            assert not np.any(d[1:] == d[:-1]) and not np.any(d[2:] == d[:-2])


def run_ops(preset, ops, feeds, outputs, base=0x10000):
    """Lower, run on fsim, compare every output with the chained references."""
    cfg = load_config(preset)
    inputs = list(feeds)
    prog = lower(cfg, ops, inputs, outputs, {k: v.shape for k, v in feeds.items()})
    out, counters = run_fsim(prog, cfg, feeds, base=base)
    vals = dict(feeds)
    for op in ops:
        vals[op.output] = op.reference(*[vals[i] for i in op.inputs])
    for name in outputs:
        assert np.array_equal(out[name], vals[name]), name
    check_hazards(prog, cfg)
    check_lanes(cfg, prog)
    assert set(prog.est_cycles) == {op.name for op in ops}
    assert all(v > 0 for v in prog.est_cycles.values())
    return prog, counters


def conv_op(x_shape, o, k, stride=1, pad=0, groups=1, dil=1, pre=0, lo=-128, name="conv"):
    c = x_shape[1]
    kh, kw = (k, k) if isinstance(k, int) else k
    q = qops.QConv2d(i8((o, c // groups, kh, kw)), RNG.integers(-4000, 4000, o).astype(np.int32),
                     requant(o, 14 if pre == 0 else 8, pre, lo=lo),
                     (stride, stride) if isinstance(stride, int) else stride,
                     (pad,) * 4 if isinstance(pad, int) else pad, (dil, dil), groups)
    out = q.reference(np.zeros(x_shape, np.int8)).shape
    return AccelOp(name, q, ["x"], "y", [x_shape], out)


CONV_CASES = {
    "3x3": dict(x=(1, 16, 8, 8), o=16, k=3, pad=1),
    "stride2_odd": dict(x=(1, 20, 9, 7), o=24, k=3, stride=2, pad=1),
    "batch_multitile": dict(x=(2, 32, 12, 12), o=40, k=3, pad=1),
    "depthwise": dict(x=(1, 32, 10, 10), o=32, k=3, pad=1, groups=32),
    "grouped": dict(x=(1, 32, 8, 8), o=32, k=3, pad=1, groups=4),
    "first_layer_im2col": dict(x=(1, 3, 16, 16), o=16, k=7, stride=2, pad=3),
    "dilated_preshift": dict(x=(1, 16, 9, 9), o=16, k=3, pad=2, dil=2, pre=3),
    "asym_pads_rect": dict(x=(1, 12, 7, 10), o=9, k=(3, 1), stride=(1, 2), pad=(2, 0, 1, 1)),
    "relu_5x5": dict(x=(1, 8, 11, 11), o=8, k=5, pad=2, lo=0),
    "one_pixel_out": dict(x=(1, 16, 3, 3), o=8, k=3),
    "1x1_stride2_rowskip": dict(x=(1, 24, 13, 12), o=20, k=1, stride=2),
    "1x1_stride3_padded": dict(x=(1, 16, 11, 10), o=16, k=1, stride=3, pad=(2, 1, 3, 0)),
}


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv(preset, case):
    p = dict(CONV_CASES[case])
    x = i8(p.pop("x"))
    op = conv_op(x.shape, **p)
    prog, _ = run_ops(preset, [op], {"x": x}, ["y"])
    if case == "first_layer_im2col":
        assert prog.inputs[0].layout == "im2col"


@pytest.mark.parametrize("preset", sorted(set(list_presets()) - {"tiny", "pynq-z1"}))
def test_conv_every_preset(preset):
    x = i8((1, 40, 10, 10))
    run_ops(preset, [conv_op(x.shape, 36, 3, stride=1, pad=1)], {"x": x}, ["y"])


def test_conv_large_window_splits_kernel_rows():
    """A window wider than the INP buffer (tiny: 128 elements per half) is split by rows."""
    x = i8((1, 8, 11, 13))
    op = AccelOp("gap", qops.QAvgPool(qops.Requant(np.int32(5), 8), None), ["x"], "y",
                 [x.shape], (1, 8, 1, 1))
    prog, _ = run_ops("tiny", [op], {"x": x}, ["y"])
    assert prog.info["gap"]["tkh"] < 11
    q = qops.QAvgPool(qops.Requant(np.int32(3), 6), (11, 9), (2, 3), (1, 2, 0, 1))
    x = i8((1, 8, 17, 19))
    op = AccelOp("ap", q, ["x"], "y", [x.shape], q.reference(x).shape)
    prog, _ = run_ops("tiny", [op], {"x": x}, ["y"])
    assert prog.info["ap"]["tkh"] < 11


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
def test_dense(preset):
    x = i8((2, 70))
    q = qops.QDense(i8((50, 70)), RNG.integers(-1000, 1000, 50).astype(np.int32),
                    qops.Requant(np.int32(37), 12))
    run_ops(preset, [AccelOp("fc", q, ["x"], "y", [x.shape], (2, 50))], {"x": x}, ["y"])


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
@pytest.mark.parametrize("kernel,stride,pads", [((3, 3), (2, 2), (1, 1, 1, 1)),
                                                ((2, 2), (2, 2), (0, 0, 0, 0)),
                                                ((3, 2), (1, 2), (0, 1, 2, 0))])
def test_maxpool(preset, kernel, stride, pads):
    x = i8((1, 20, 11, 13))  # negative values: padding must act as -infinity
    q = qops.QMaxPool(kernel, stride, pads)
    run_ops(preset, [AccelOp("mp", q, ["x"], "y", [x.shape], q.reference(x).shape)],
            {"x": x}, ["y"])


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
@pytest.mark.parametrize("ma,mb,shift,lo", [(3, -5, 2, 0), (300, 1000, 11, -128), (1, 1, 0, -128),
                                            (7232, -32768, 16, -20), (32700, 5, 16, 0),
                                            (0, 640, 9, -128)])
def test_add(preset, ma, mb, shift, lo):
    a, b = i8((1, 20, 11, 13)), i8((1, 20, 11, 13))
    q = qops.QAdd(ma, mb, shift, lo=lo)
    prog, _ = run_ops(preset, [AccelOp("add", q, ["a", "b"], "y", [a.shape] * 2, a.shape)],
                      {"a": a, "b": b}, ["y"])
    assert prog.info["add"]["small_mult"] == (max(abs(ma), abs(mb)) <= 127)
    assert prog.info["add"]["digits"] == (not prog.info["add"]["small_mult"] and ma != 32700)
    # Rounding by a GEMM micro-op (ALU lane relieved) unless the sum needs two ACC regions.
    assert prog.info["add"]["gemm_round"] == (shift > 0 and ma != 32700)


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
def test_avgpool(preset):
    x = i8((1, 20, 11, 13))
    for q in (qops.QAvgPool(qops.Requant(np.int32(5), 8), None),
              qops.QAvgPool(qops.Requant(np.int32(7), 6), (3, 3), (2, 2), (1, 1, 1, 1))):
        run_ops(preset, [AccelOp("ap", q, ["x"], "y", [x.shape], q.reference(x).shape)],
                {"x": x}, ["y"])


def test_multi_op_partition_and_serialisation():
    """conv -> conv -> add -> maxpool in one program, an intermediate also an output;
    the program survives to_dict/from_dict and runs at another region base."""
    x = i8((1, 16, 12, 12))
    s = (1, 24, 12, 12)
    c1 = conv_op(x.shape, 24, 3, pad=1, lo=0, name="c1")
    c1.output = "a"
    c2 = conv_op(s, 24, 3, pad=1, name="c2")
    c2.inputs, c2.output = ["a"], "b"
    ops = [c1, c2, AccelOp("add", qops.QAdd(90, 70, 7, lo=0), ["a", "b"], "c", [s, s], s),
           AccelOp("mp", qops.QMaxPool(), ["c"], "y", [s], (1, 24, 6, 6))]
    for preset in ("tiny", "pynq-z1"):
        prog, _ = run_ops(preset, ops, {"x": x}, ["y", "b"])
        assert [r[0] for r in prog.node_ranges] == ["c1", "c2", "add", "mp"]
        assert prog.node_ranges[-1][2] == prog.num_insns
        again = AccelProgram.from_dict(prog.to_dict())
        cfg = load_config(preset)
        out, _ = run_fsim(again, cfg, {"x": x}, base=0x200000)
        ref = ops[3].reference(ops[2].reference(ops[0].reference(x), ops[1].reference(
            ops[0].reference(x))))
        assert np.array_equal(out["y"], ref)


def test_finish_last_and_tokens_balanced():
    x = i8((1, 16, 8, 8))
    prog = lower("pynq-z1", [conv_op(x.shape, 16, 3, pad=1)], ["x"], ["y"], {"x": x.shape})
    insns = decode_program(prog.insns, load_config("pynq-z1"))
    assert insns[-1].opcode is Opcode.FINISH
    count = {f: sum(getattr(i, f) for i in insns) for f in
             ("pop_prev_dep", "pop_next_dep", "push_prev_dep", "push_next_dep")}
    assert count["pop_prev_dep"] + count["pop_next_dep"] == \
        count["push_prev_dep"] + count["push_next_dep"]


def test_relocation():
    x = i8((1, 16, 8, 8))
    cfg = load_config("pynq-z1")
    prog = lower(cfg, [conv_op(x.shape, 16, 3, pad=1)], ["x"], ["y"], {"x": x.shape})
    moved = decode_program(prog.relocated_insns(0x40000, cfg), cfg)
    for a, b in zip(decode_program(prog.insns, cfg), moved):
        if a.opcode in (Opcode.LOAD, Opcode.STORE) and a.x_size:
            eb = {MemType.UOP: 4, MemType.WGT: cfg.wgt_elem_bytes, MemType.ACC:
                  cfg.acc_elem_bytes}.get(a.memory_type, cfg.inp_elem_bytes)
            assert b.dram_base == a.dram_base + 0x40000 // eb
    with pytest.raises(ValueError, match="4096"):
        prog.relocated_insns(100, cfg)


def test_errors():
    x = (1, 16, 8, 8)
    with pytest.raises(LoweringError, match="pads"):
        lower("tiny", [conv_op(x, 16, 3, pad=16)], ["x"], ["y"], {"x": x})
    with pytest.raises(LoweringError, match="neither"):
        op = conv_op(x, 16, 3)
        lower("tiny", [op], ["z"], ["y"], {"z": x})
    with pytest.raises(LoweringError, match="no accelerator lowering"):
        lower("tiny", [AccelOp("r", qops.Requant(np.int32(1)), ["x"], "y", [x], x)], ["x"],
              ["y"], {"x": x})
    with pytest.raises(LoweringError, match="mult_a"):
        lower("tiny", [AccelOp("a", qops.QAdd(1 << 16, 1), ["x", "x"], "y", [x, x], x)],
              ["x"], ["y"], {"x": x})
    with pytest.raises(LoweringError, match="groups"):
        q = qops.QConv2d(i8((16, 5, 3, 3)), np.zeros(16, np.int32), requant(16), groups=3)
        lower("tiny", [AccelOp("c", q, ["x"], "y", [x], (1, 16, 6, 6))], ["x"], ["y"],
              {"x": x})
    assert not supports("tiny", qops.QMaxPool(pads=(20, 0, 0, 0)), [x], (1, 16, 4, 4))
    assert supports("tiny", qops.QMaxPool(), [x], (1, 16, 4, 4))


@pytest.mark.parametrize("lo", [-128, 0])
def test_conv_reinit_without_reset(lo):
    """pre_shift > 0 and a bias too large for a GEMM micro-op: later tiles set their
    accumulators with one MIN instead of reset + ADD."""
    x = i8((1, 16, 16, 16))
    q = qops.QConv2d(i8((24, 16, 3, 3)), RNG.integers(-900000, 900000, 24).astype(np.int32),
                     qops.Requant(RNG.integers(1, 3000, 24).astype(np.int32), 13, 6, lo, 127),
                     pads=(1, 1, 1, 1))
    op = AccelOp("conv", q, ["x"], "y", [x.shape], (1, 24, 16, 16))
    prog, counters = run_ops("tiny", [op], {"x": x}, ["y"])
    insns = decode_program(prog.insns, load_config("tiny"))
    resets = sum(1 for i in insns if i.opcode is Opcode.GEMM and i.reset_reg)
    tiles = sum(1 for i in insns if i.opcode is Opcode.STORE and i.x_size and i.pop_prev_dep)
    assert 1 <= resets <= 2 < tiles


def test_batch2_configuration():
    """BATCH = 2 (a custom configuration): padded batch rows, every operator kind."""
    cfg = load_config("tiny").replace(log_batch=1, name="b2")
    x = i8((3, 12, 9, 9))
    s = (3, 12, 9, 9)
    c = qops.QConv2d(i8((12, 12, 3, 3)), RNG.integers(-3000, 3000, 12).astype(np.int32),
                     requant(12, 12, 3, lo=0), (1, 1), (1, 1, 1, 1))
    ops = [AccelOp("c", c, ["x"], "a", [s], s),
           AccelOp("add", qops.QAdd(3000, 77, 12), ["a", "x"], "b", [s, s], s),
           AccelOp("mp", qops.QMaxPool((3, 3), (2, 2), (1, 1, 1, 1)), ["b"], "m", [s],
                   (3, 12, 5, 5)),
           AccelOp("gap", qops.QAvgPool(qops.Requant(np.int32(9), 8), None), ["m"], "g",
                   [(3, 12, 5, 5)], (3, 12, 1, 1))]
    run_ops(cfg, ops, {"x": x}, ["g", "b"])


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
@pytest.mark.parametrize("c", [8, 64])
def test_conv_bias_by_gemm(preset, c):
    """pre_shift > 0 and a bias that fits one weight block: added by a GEMM micro-op when the
    reduction is short (the GEMM lane has room), by the ALU lane when it is long (c=64)."""
    x = i8((1, c, 10, 10))
    q = qops.QConv2d(i8((24, c, 3, 3)), RNG.integers(-100000, 100000, 24).astype(np.int32),
                     qops.Requant(RNG.integers(1, 3000, 24).astype(np.int32), 13, 6, 0, 127),
                     pads=(1, 1, 1, 1))
    prog, _ = run_ops(preset, [AccelOp("conv", q, ["x"], "y", [x.shape], (1, 24, 10, 10))],
                      {"x": x}, ["y"])
    insns = decode_program(prog.insns, load_config(preset))
    tensor_add = any(i.opcode is Opcode.ALU and i.alu_opcode.name == "ADD" and not i.use_imm
                     for i in insns)
    if c == 64 or preset == "pynq-z1":  # tiny's two ACC read ports make the ALU bias cheap
        assert tensor_add == (c == 64)


def _lanes_case():
    x = i8((1, 16, 24, 24))
    op = conv_op(x.shape, 40, 3, pad=1, pre=3)
    return x, op


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
def test_lane_rules_hold_on_multi_tile_programs(preset):
    """conv (pre-shift, per-channel vectors), dense, max pooling and add: every GEMM/ALU in one
    ACC bank, and the next tile's reset between a tile's GEMMs and its epilogue."""
    cfg = load_config(preset)
    x, conv = _lanes_case()
    s = conv.out_shape
    conv.output = "a"
    ops = [conv, AccelOp("mp", qops.QMaxPool((3, 3), (1, 1), (1, 1, 1, 1)), ["a"], "m", [s], s),
           AccelOp("add", qops.QAdd(300, 1000, 11), ["a", "m"], "y", [s, s], s)]
    prog, _ = run_ops(cfg, ops, {"x": x}, ["y"])
    counts = check_lanes(cfg, prog)
    assert min(counts["per_op"].values()) >= 1, counts  # several tiles in every operator
    xd = i8((3, 700))
    q = qops.QDense(i8((300, 700)), RNG.integers(-1000, 1000, 300).astype(np.int32),
                    qops.Requant(RNG.integers(1, 90, 300).astype(np.int32), 12))
    prog, _ = run_ops(cfg, [AccelOp("fc", q, ["x"], "y", [xd.shape], (3, 300))], {"x": xd},
                      ["y"])
    insns = decode_program(prog.insns, cfg)
    masks = bank_sets(cfg, insns, prog.segments)
    assert {m for i, m in zip(insns, masks) if i.opcode in (Opcode.GEMM, Opcode.ALU)} == {1, 2}


def test_lane_rules_detect_violations(monkeypatch):
    """The checker is not vacuous: without holding epilogues back the order rule fails, and a
    per-channel vector outside the tile's bank breaks the bank rule."""
    from pyvta.compiler.lower import emit
    cfg = load_config("tiny")
    x, op = _lanes_case()
    monkeypatch.setattr(emit.Emitter, "tile_body", lambda self: None)
    prog = lower(cfg, [op], ["x"], ["y"], {"x": x.shape}, estimate=False)
    with pytest.raises(LaneRuleError, match="reset"):
        check_lanes(cfg, prog)
    monkeypatch.undo()
    prog = lower(cfg, [op], ["x"], ["y"], {"x": x.shape}, estimate=False)
    check_lanes(cfg, prog)
    insns = decode_program(prog.insns, cfg)
    k = next(i for i, insn in enumerate(insns)
             if insn.opcode is Opcode.ALU and not insn.use_imm)
    # Widen a tensor ALU pass so it reaches into the other bank.
    import dataclasses
    from pyvta.hw.isa import encode_program
    insns[k] = dataclasses.replace(insns[k], iter_out=insns[k].iter_out + cfg.acc_depth // 2,
                                   dst_factor_out=1)
    prog.insns = encode_program(insns, cfg)
    with pytest.raises(LaneRuleError, match="both ACC banks"):
        check_lanes(cfg, prog)


def test_two_lane_estimate_overlaps_epilogues():
    """compiler.cost's two-lane model: the held-back epilogues overlap the GEMMs (fewer cycles
    than one pipeline, never fewer than the GEMM micro-ops alone)."""
    from pyvta.compiler.cost import simulate
    cfg = load_config("pynq-z1")
    x = i8((1, 64, 28, 28))
    op = conv_op(x.shape, 64, 3, pad=1, pre=3)
    prog = lower(cfg, [op], ["x"], ["y"], {"x": x.shape}, estimate=False)
    insns = decode_program(prog.insns, cfg)
    one = simulate(cfg, insns).total
    two = simulate(cfg, insns, banks=bank_sets(cfg, insns, prog.segments)).total
    gemm = sum(i.iter_out * i.iter_in * (i.uop_end - i.uop_bgn) for i in insns
               if i.opcode is Opcode.GEMM and not i.reset_reg)
    assert gemm < two < one * 0.93, (gemm, two, one)


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
@pytest.mark.parametrize("o", [64, 8])
def test_split_stores_when_alu_lane_is_busier(preset, o):
    """A 1x1 convolution (short reduction: the ALU lane is the busier one) stores each tile in
    two parts, by output blocks (o=64) or by rows (o=8): the first part's stores start while
    the ALU still requantizes the second (two compute->store tokens per tile)."""
    x = i8((1, 16, 20, 20))
    prog, _ = run_ops(preset, [conv_op(x.shape, o, 1, pre=3)], {"x": x}, ["y"])
    insns = decode_program(prog.insns, load_config(preset))
    c2s = sum(i.push_next_dep for i in insns if i.opcode in (Opcode.ALU, Opcode.GEMM))
    s2c = sum(i.push_prev_dep for i in insns if i.opcode is Opcode.STORE)
    assert c2s == 2 * s2c > 0


@pytest.mark.parametrize("preset", ["tiny", "pynq-z1"])
@pytest.mark.parametrize("ma,mb,shift", [(512, -768, 12), (256, 1024, 5), (2560, 256, 8),
                                         (-256, 256, 0), (256, 512, 9)])
def test_add_multiples_of_256(preset, ma, mb, shift):
    """Multipliers 256*h: GEMMs with h*I, the factor 256 folded into the shift (exact)."""
    a, b = i8((1, 20, 11, 13)), i8((1, 20, 11, 13))
    q = qops.QAdd(ma, mb, shift, lo=-100)
    prog, _ = run_ops(preset, [AccelOp("add", q, ["a", "b"], "y", [a.shape] * 2, a.shape)],
                      {"a": a, "b": b}, ["y"])
    assert prog.info["add"]["hi_only"]


def test_minimal_order_without_interleaving(monkeypatch):
    """``Emitter.interleave = False`` (the spec's minimal order: a tile's whole epilogue right
    after the next tile's reset) is also exact and keeps both lane rules."""
    from pyvta.compiler.lower import emit
    init = emit.Emitter.__init__

    def plain(self, cfg):
        init(self, cfg)
        self.interleave = False
    monkeypatch.setattr(emit.Emitter, "__init__", plain)
    x, op = _lanes_case()
    s = op.out_shape
    op.output = "a"
    ops = [op, AccelOp("add", qops.QAdd(300, 1000, 11), ["a", "a"], "y", [s, s], s)]
    prog, _ = run_ops("pynq-z1", ops, {"x": x}, ["y"])
    assert min(check_lanes(load_config("pynq-z1"), prog)["per_op"].values()) >= 1
