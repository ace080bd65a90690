"""``lower``: one partition of quantized operators -> one :class:`AccelProgram`."""

from __future__ import annotations

import numpy as np

from ...hw.config import HwConfig, load_config
from ...hw.isa import encode_program
from ...sim.dram import Dram
from ...sim.fsim import FunctionalSimulator
from .. import qops
from ..layout import ceil_div
from .conv import lower_conv
from .eltwise import lower_add
from .emit import Emitter, LoweringError
from .pool import lower_maxpool
from .program import AccelOp, AccelProgram, TensorPlacement

__all__ = ["lower", "run_fsim", "as_conv", "op_macs", "supports"]


def as_conv(op: AccelOp) -> tuple[qops.QConv2d, tuple] | None:
    """The convolution an operator is computed as (dense and average pooling are ones), with
    its NCHW input shape; None for operators that are not convolutions."""
    q = op.qop
    if isinstance(q, qops.QConv2d):
        return q, op.in_shapes[0]
    if isinstance(q, qops.QDense):
        o, k = np.asarray(q.weight).shape
        n = op.in_shapes[0][0]
        return qops.QConv2d(np.asarray(q.weight).reshape(o, k, 1, 1), q.bias, q.requant), \
            (n, k, 1, 1)
    if isinstance(q, qops.QAvgPool):
        n, c, h, w = op.in_shapes[0]
        kernel = (h, w) if q.kernel is None else tuple(q.kernel)
        stride = (1, 1) if q.kernel is None else tuple(q.stride)
        pads = (0, 0, 0, 0) if q.kernel is None else tuple(q.pads)
        return qops.QConv2d(np.ones((c, 1) + kernel, np.int8), np.zeros(c, np.int32),
                            q.requant, stride, pads, (1, 1), c), (n, c, h, w)
    return None


def op_macs(op: AccelOp) -> int:
    """Useful multiply-accumulates of an operator (0 for pooling and additions)."""
    conv = as_conv(op)
    if conv is None or isinstance(op.qop, qops.QAvgPool):
        return 0
    q, shape = conv
    o, cg, kh, kw = q.weight.shape
    n = shape[0]
    ho, wo = (op.out_shape[2], op.out_shape[3]) if len(op.out_shape) == 4 else (1, 1)
    return n * o * cg * kh * kw * ho * wo


def _im2col_inputs(cfg, ops, inputs, outputs) -> dict:
    """Program inputs that are better fed as im2col: read by exactly one ordinary convolution
    with few channels, where folding the window into channels saves reduction blocks."""
    chosen = {}
    for name in inputs:
        users = [op for op in ops if name in op.inputs]
        if len(users) != 1 or name in outputs or not isinstance(users[0].qop, qops.QConv2d):
            continue
        q = users[0].qop
        c = users[0].in_shapes[0][1]
        o, cg, kh, kw = q.weight.shape
        if q.groups != 1 or kh * kw == 1 or c >= cfg.block_in:
            continue
        if ceil_div(c * kh * kw, cfg.block_in) < ceil_div(c, cfg.block_in) * kh * kw:
            chosen[name] = {"kernel": (kh, kw), "stride": tuple(q.stride),
                            "pads": tuple(q.pads), "dilation": tuple(q.dilation)}
    return chosen


def _check(ops, inputs, outputs, shapes):
    known = set(inputs)
    for name in inputs:
        if name not in shapes:
            raise LoweringError(f"no shape given for partition input {name!r}")
    for op in ops:
        if not isinstance(op, AccelOp):
            raise LoweringError(f"ops must be AccelOp instances, not {type(op).__name__}")
        for x in op.inputs:
            if x not in known:
                raise LoweringError(f"{op.name}: input {x!r} is neither a partition input nor "
                                    f"produced by an earlier operator")
        if op.output in known:
            raise LoweringError(f"{op.name}: output {op.output!r} is written twice")
        known.add(op.output)
    for name in outputs:
        if name not in known:
            raise LoweringError(f"partition output {name!r} is not produced")


def lower(cfg: HwConfig | str, ops: list, inputs: list, outputs: list, shapes: dict,
          progress=None, estimate: bool = True) -> AccelProgram:
    """Compile a partition (``ops`` in topological order) into one accelerator program.

    Parameters
    ----------
    cfg : HwConfig or preset name
    ops : list of AccelOp
    inputs, outputs : value names crossing the partition boundary (int8)
    shapes : logical shapes of (at least) the inputs
    progress : optional ``callable(index, count, op_name)`` called before each operator
    estimate : run the cost model for ``est_cycles`` (False leaves them 0: capability checks)
    """
    cfg = load_config(cfg)
    ops = list(ops)
    if not ops:
        raise LoweringError("a partition needs at least one operator")
    _check(ops, inputs, outputs, shapes)
    em = Emitter(cfg)
    em.plan_trials = estimate
    eb = cfg.inp_elem_bytes
    shape_of = {n: tuple(shapes[n]) for n in inputs}
    for op in ops:
        shape_of[op.output] = op.out_shape
    im2col_in = _im2col_inputs(cfg, ops, inputs, outputs)
    place: dict[str, TensorPlacement] = {}
    for name in inputs:
        p = TensorPlacement(name, shape_of[name], 0, "im2col" if name in im2col_in else "packed",
                            im2col_in.get(name, {}))
        p.offset = em.region.alloc(p.nbytes(cfg), max(64, eb))
        place[name] = p
    for op in ops:
        p = TensorPlacement(op.output, op.out_shape, 0)
        p.offset = em.region.alloc(p.nbytes(cfg), max(64, eb))
        place[op.output] = p

    node_ranges, info = [], {}
    for i, op in enumerate(ops):
        if progress is not None:
            progress(i, len(ops), op.name)
        begin = len(em.insns)
        if i:
            em.barrier()
        addr = [place[x].offset // eb for x in op.inputs]
        out_addr = place[op.output].offset // eb
        q = op.qop
        try:
            if isinstance(q, qops.QMaxPool):
                info[op.name] = lower_maxpool(em, q, op.in_shapes[0], addr[0], out_addr, op.name)
            elif isinstance(q, qops.QAdd):
                if len(op.inputs) != 2 or op.in_shapes[0] != op.in_shapes[1]:
                    raise LoweringError(f"{op.name}: QAdd needs two inputs of one shape, "
                                        f"not {op.in_shapes}")
                info[op.name] = lower_add(em, q, op.in_shapes[0], addr[0], addr[1], out_addr,
                                          op.name)
            else:
                conv = as_conv(op)
                if conv is None:
                    raise LoweringError(f"{op.name}: {type(q).__name__} has no accelerator "
                                        f"lowering")
                qc, in_shape = conv
                src = place[op.inputs[0]]
                if src.layout == "im2col":
                    o = qc.weight.shape[0]
                    qc = qops.QConv2d(qc.weight.reshape(o, -1, 1, 1), qc.bias, qc.requant)
                    in_shape = src.stored_shape
                plan = lower_conv(em, qc, in_shape, addr[0], out_addr, op.name)
                info[op.name] = plan.to_dict() | {"im2col": src.layout == "im2col"}
        except LoweringError:
            raise
        except ValueError as exc:
            raise LoweringError(f"{op.name}: {exc}") from None
        node_ranges.append([op.name, begin, len(em.insns)])
    em.finish()
    node_ranges[-1][2] = len(em.insns)
    est, prev = {op.name: 0 for op in ops}, 0
    if estimate:
        total, ends, model = _timing(cfg, em.insns, em.region)
        for name, b, e in node_ranges:
            t = max(ends[b:e]) if e > b else prev
            est[name] = est.get(name, 0) + max(0, t - prev)
            prev = max(prev, t)
        info["__total__"] = {"cycles": total, "insns": len(em.insns), "model": model}
    return AccelProgram(cfg.fingerprint, encode_program(em.insns, cfg), em.region.size,
                        list(em.region.segments), [place[n] for n in inputs],
                        [place[n] for n in outputs], ops,
                        [tuple(r) for r in node_ranges], est, info)


def _timing(cfg, insns, region):
    """Total cycles and per-instruction completion times from the RTL-calibrated timing model
    (``pyvta.sim.timing``). It sees the micro-ops (the region's constant segments), so it
    knows each GEMM/ALU instruction's ACC banks and models the two compute lanes."""
    from ...sim.timing import estimate_cycles
    image = np.zeros(region.size, np.uint8)
    for off, data in region.segments:
        image[off:off + len(data)] = np.frombuffer(data, np.uint8)
    rep = estimate_cycles(cfg, insns, dram=(image.tobytes(), 0))
    ends = [0] * len(insns)
    for t in rep.insns:
        ends[t.index] = max(t.end, t.done)
    return rep.cycles, ends, "sim.timing"


def run_fsim(prog: AccelProgram, cfg: HwConfig | str, feeds: dict, base: int = 0x10000,
             guard: int = 4096):
    """Run a program on the functional simulator at region ``base``; returns
    ``({output name: int8 array}, Counters)``. The region is surrounded by guard bytes that
    must come back unchanged."""
    cfg = load_config(cfg)
    size = -(-prog.dram_size // 4096) * 4096
    dram = Dram(base + size + guard)
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 256, dram.size, dtype=np.uint8)
    dram.write(0, pattern)
    for off, data in prog.segments:
        dram.write(base + off, np.frombuffer(data, np.uint8))
    for p in prog.inputs:
        if p.name not in feeds:
            raise ValueError(f"missing input {p.name!r}")
        dram.write(base + p.offset, np.frombuffer(p.pack(feeds[p.name], cfg), np.uint8))
    counters = FunctionalSimulator(cfg, dram).run(prog.relocated_insns(base, cfg))
    outs = {p.name: p.unpack(dram.read(base + p.offset, p.nbytes(cfg)), cfg)
            for p in prog.outputs}
    if not np.array_equal(dram.mem[:base], pattern[:base]) or \
            not np.array_equal(dram.mem[base + size:], pattern[base + size:]):
        raise RuntimeError("the program wrote outside its DRAM region")
    return outs, counters


def supports(cfg: HwConfig | str, qop, in_shapes, out_shape) -> bool:
    """Whether :func:`lower` accepts ``qop`` with these shapes for ``cfg`` (the partitioner's
    capability check). Lowers the operator alone; any :class:`LoweringError` means no."""
    cfg = load_config(cfg)
    in_shapes = [tuple(tuple(s) for s in in_shapes)][0]
    key = (cfg.fingerprint, id(qop), in_shapes, tuple(out_shape))
    hit = _SUPPORTS_CACHE.get(key)
    if hit is not None and hit[0] is qop:  # the same object (ids can be reused)
        return hit[1]
    ok = _supports(cfg, qop, in_shapes, out_shape)
    if len(_SUPPORTS_CACHE) > 4096:
        _SUPPORTS_CACHE.clear()
    _SUPPORTS_CACHE[key] = (qop, ok)
    return ok


_SUPPORTS_CACHE: dict = {}


def _supports(cfg, qop, in_shapes, out_shape) -> bool:
    names = [f"in{i}" for i in range(len(in_shapes))]
    op = AccelOp("probe", qop, names, "out", in_shapes, tuple(out_shape))
    try:
        lower(cfg, [op], names, ["out"], dict(zip(names, in_shapes)), estimate=False)
    except (LoweringError, ValueError):
        return False
    return True
