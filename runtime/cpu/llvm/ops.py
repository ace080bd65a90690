"""Plan ONNX nodes onto compiled kernels: which kernels, with which buffers, in which order.

:func:`plan_node` looks at one node with its static input shapes/dtypes (and the values of its
constant inputs) and returns a :class:`NodePlan`, or ``None`` when the LLVM path does not cover
that operator or mode (the executor then runs :mod:`..numpy_ops`). A plan owns its output
buffers: they are allocated once and rewritten by every call, so a session allocates nothing per
inference.
"""

from __future__ import annotations


import numpy as np

from .. import numpy_ops as nops
from .renderer import render_elementwise, render_rows, render_softmax_axis
from .linalg import (pack_b, padded_cols, render_depthwise, render_gemm, render_im2col,
                     render_pool2d,
                     render_resize2d)
from .program import Program

__all__ = ["NodePlan", "plan_node", "LLVM_OPS", "plan_pack", "plan_unpack"]

F = np.dtype(np.float32)


class NodePlan:
    """Executes one node: a list of compiled steps writing preallocated outputs."""

    def __init__(self, outputs, steps, kernels=0):
        self.outputs = outputs          #: output arrays (reused across calls)
        self.steps = steps              #: callables ``step(inputs)``
        self.kernels = kernels          #: number of compiled kernels used

    def __call__(self, inputs):
        for step in self.steps:
            step(inputs)
        return self.outputs


def _contig(shape):
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def _bcast_strides(in_shape, out_shape):
    """Element strides of a contiguous ``in_shape`` broadcast to ``out_shape``."""
    pad = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    st = _contig(pad)
    return tuple(0 if d == 1 and o != 1 else s for d, o, s in zip(pad, out_shape, st))


def _attr(node, name, default=None):
    v = node.attrs.get(name, default)
    return default if v is None else v


def _arr(a):
    if type(a) is np.ndarray and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# Element-wise

def _neg(kb, m, x):
    return kb.b.fsub(_c(0.0), x)


def _c(v):
    from .renderer import f32
    return f32(v)


def _unary_expr(node):
    op = node.op
    if op == "Relu":
        return lambda kb, m, x: kb.b.select(kb.b.fcmp_ordered("<", x, _c(0.0)), _c(0.0), x)
    if op == "Sigmoid":
        return lambda kb, m, x: m.sigmoid(x)
    if op == "Tanh":
        return lambda kb, m, x: m.tanh(x)
    if op == "Exp":
        return lambda kb, m, x: m.exp(x)
    if op == "Erf":
        return lambda kb, m, x: m.erf(x)
    if op == "Neg":
        return _neg
    if op == "Abs":
        return lambda kb, m, x: m.abs(x)
    if op == "Sqrt":
        return lambda kb, m, x: kb.call("llvm.sqrt.f32", x)
    if op == "Floor":
        return lambda kb, m, x: kb.call("llvm.floor.f32", x)
    if op == "Ceil":
        return lambda kb, m, x: kb.call("llvm.ceil.f32", x)
    if op == "Reciprocal":
        return lambda kb, m, x: kb.b.fdiv(_c(1.0), x)
    if op in ("Identity", "Dropout"):
        return lambda kb, m, x: x
    if op == "HardSigmoid":
        a, c = float(_attr(node, "alpha", 0.2)), float(_attr(node, "beta", 0.5))
        return lambda kb, m, x: m.min(m.max(m.fma(x, _c(a), _c(c)), _c(0.0)), _c(1.0))
    if op == "HardSwish":
        return lambda kb, m, x: kb.b.fmul(x, m.min(m.max(m.fma(x, _c(1 / 6), _c(0.5)),
                                                         _c(0.0)), _c(1.0)))
    if op == "LeakyRelu":
        a = float(_attr(node, "alpha", 0.01))
        return lambda kb, m, x: kb.b.select(kb.b.fcmp_ordered("<", x, _c(0.0)),
                                            kb.b.fmul(x, _c(a)), x)
    if op == "Elu":
        a = float(_attr(node, "alpha", 1.0))
        return lambda kb, m, x: kb.b.select(
            kb.b.fcmp_ordered(">", x, _c(0.0)), x,
            kb.b.fmul(_c(a), kb.b.fsub(m.exp(x), _c(1.0))))
    if op == "Gelu":
        if _attr(node, "approximate", "none") != "none":
            return None
        return lambda kb, m, x: kb.b.fmul(kb.b.fmul(x, _c(0.5)), kb.b.fadd(
            _c(1.0), m.erf(kb.b.fmul(x, _c(0.7071067811865476)))))
    return None


_BINARY = {
    "Add": lambda kb, m, a, b: kb.b.fadd(a, b),
    "Sub": lambda kb, m, a, b: kb.b.fsub(a, b),
    "Mul": lambda kb, m, a, b: kb.b.fmul(a, b),
    "Div": lambda kb, m, a, b: kb.b.fdiv(a, b),
    "Max": lambda kb, m, a, b: kb.b.select(kb.b.fcmp_unordered("uno", a, b), kb.b.fadd(a, b),
                                           m.max(a, b)),
    "Min": lambda kb, m, a, b: kb.b.select(kb.b.fcmp_unordered("uno", a, b), kb.b.fadd(a, b),
                                           m.min(a, b)),
    "PRelu": lambda kb, m, a, b: kb.b.select(kb.b.fcmp_ordered("<", a, _c(0.0)),
                                             kb.b.fmul(a, b), a),
}


#: Operators whose per-element work is a polynomial (worth threads on smaller tensors).
_COSTLY = {"Sigmoid": 12, "Tanh": 14, "Exp": 10, "Erf": 16, "Gelu": 18, "Elu": 10}


def _elementwise(out_shape, in_shapes, expr, out_dtype=F, in_dtypes=None, cost=1):
    out = np.empty(out_shape, out_dtype)
    in_dtypes = in_dtypes or [F] * len(in_shapes)
    kern = render_elementwise(out_shape, _contig(out_shape), out_dtype,
                              [(_bcast_strides(s, out_shape), 0, d)
                               for s, d in zip(in_shapes, in_dtypes)], expr, cost=cost)
    prog = Program(kern)

    def step(inputs):
        prog(out, *[_arr(x) for x in inputs])
    return NodePlan([out], [step], 1)


def _plan_elementwise(node, shapes, dtypes, consts):
    if any(d != F for d in dtypes if d is not None):
        return None
    if node.op == "Clip":
        lo = consts.get(1, node.attrs.get("min"))
        hi = consts.get(2, node.attrs.get("max"))
        if (len(shapes) > 1 and shapes[1] is not None and 1 not in consts) or \
                (len(shapes) > 2 and shapes[2] is not None and 2 not in consts):
            return None      # bounds computed at run time
        lo = -np.inf if lo is None else float(np.asarray(lo))
        hi = np.inf if hi is None else float(np.asarray(hi))

        def clip(kb, m, x):
            return m.min(m.max(x, _c(lo)), _c(hi))
        plan = _elementwise(shapes[0], [shapes[0]], clip)
        step = plan.steps[0]
        plan.steps = [lambda inputs: step(inputs[:1])]
        return plan
    if node.op in _BINARY:
        if len(shapes) != 2:
            return None
        out_shape = np.broadcast_shapes(shapes[0], shapes[1])
        return _elementwise(out_shape, shapes, _BINARY[node.op])
    if node.op == "Dropout" and len(node.outputs) > 1 and node.outputs[1]:
        return None
    expr = _unary_expr(node)
    if expr is None:
        return None
    plan = _elementwise(shapes[0], [shapes[0]], expr, cost=_COSTLY.get(node.op, 1))
    step = plan.steps[0]
    plan.steps = [lambda inputs: step(inputs[:1])]
    return plan


# ---------------------------------------------------------------------------------------------
# Rows: softmax, layer norm, global pooling

def _plan_rows(node, shapes, dtypes, consts):
    if dtypes[0] != F:
        return None
    shape = shapes[0]
    if node.op in ("Softmax", "LogSoftmax"):
        axis = _attr(node, "axis", -1) % len(shape)
        if axis != len(shape) - 1:
            outer = int(np.prod(shape[:axis], dtype=np.int64))
            inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
            prog = Program(render_softmax_axis(node.op.lower(), outer, shape[axis], inner))
            out = np.empty(shape, F)
            scratch = np.empty(outer * 2 * inner, F)
            return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]), scratch)], 1)
        rows, length = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
        prog = Program(render_rows(node.op.lower(), rows, length))
        out = np.empty(shape, F)
        return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]))], 1)
    if node.op == "LayerNormalization":
        if len([o for o in node.outputs if o]) > 1:
            return None
        axis = _attr(node, "axis", -1) % len(shape)
        rows = int(np.prod(shape[:axis], dtype=np.int64))
        length = int(np.prod(shape[axis:], dtype=np.int64))
        prog = Program(render_rows("layernorm", rows, length, float(_attr(node, "epsilon", 1e-5))))
        out = np.empty(shape, F)
        zeros = np.zeros(length, F)

        def step(ins):
            scale = np.broadcast_to(ins[1], shape[axis:]).astype(F).reshape(-1)
            bias = zeros if len(ins) < 3 or ins[2] is None else \
                np.broadcast_to(ins[2], shape[axis:]).astype(F).reshape(-1)
            prog(out, _arr(ins[0]), _arr(scale), _arr(bias))
        return NodePlan([out], [step], 1)
    if node.op in ("ReduceMean", "ReduceSum", "ReduceMax"):
        axes = consts.get(1, node.attrs.get("axes"))
        rank = len(shape)
        if axes is None or len(np.atleast_1d(axes)) == 0:
            if _attr(node, "noop_with_empty_axes", 0):
                return None
            axes = list(range(rank))
        axes = sorted(int(a) % rank for a in np.atleast_1d(axes))
        if axes != list(range(rank - len(axes), rank)) or len(axes) == 0:
            return None        # only trailing (contiguous) axes: one row per output element
        rows = int(np.prod(shape[:rank - len(axes)], dtype=np.int64))
        length = int(np.prod(shape[rank - len(axes):], dtype=np.int64))
        kind = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max"}[node.op]
        prog = Program(render_rows(kind, rows, length))
        keep = bool(_attr(node, "keepdims", 1))
        out_shape = tuple(shape[:rank - len(axes)]) + ((1,) * len(axes) if keep else ())
        out = np.empty(out_shape, F)
        return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]))], 1)
    if node.op == "GlobalAveragePool" or node.op == "GlobalMaxPool":
        rows = shape[0] * shape[1]
        length = int(np.prod(shape[2:], dtype=np.int64))
        prog = Program(render_rows("mean" if node.op == "GlobalAveragePool" else "max",
                                   rows, length))
        out = np.empty(shape[:2] + (1,) * (len(shape) - 2), F)
        return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]))], 1)
    return None


# ---------------------------------------------------------------------------------------------
# Pooling, convolution, matrix products

def _pool_geometry(node, shape):
    kernel = list(_attr(node, "kernel_shape"))
    strides = list(_attr(node, "strides", None) or [1, 1])
    dil = list(_attr(node, "dilations", None) or [1, 1])
    pads = nops.conv_pads(node, shape[2:], kernel, strides, dil)
    out_hw = nops.pool_output_shape(shape[2:], kernel, strides, pads, dil,
                                    int(_attr(node, "ceil_mode", 0)))
    return kernel, strides, dil, pads, out_hw


def _plan_pool(node, shapes, dtypes, consts):
    shape = shapes[0]
    if dtypes[0] != F or len(shape) != 4 or (len(node.outputs) > 1 and node.outputs[1]):
        return None
    kernel, strides, dil, pads, (oh, ow) = _pool_geometry(node, shape)
    n, c, h, w = shape
    kind = "max" if node.op == "MaxPool" else "avg"
    prog = Program(render_pool2d(kind, n * c, h, w, (oh, ow), kernel, strides, pads, dil))
    out = np.empty((n, c, oh, ow), F)
    extra = []
    if kind == "avg":
        include = int(_attr(node, "count_include_pad", 0))

        def count(o, k, s, d, p0, p1, size):
            lo, hi = (-p0, size + p1) if include else (0, size)
            return np.array([sum(1 for t in range(k) if lo <= i * s + t * d - p0 < hi)
                             for i in range(o)], np.float32)
        cy = count(oh, kernel[0], strides[0], dil[0], pads[0], pads[2], h)
        cx = count(ow, kernel[1], strides[1], dil[1], pads[1], pads[3], w)
        extra = [_arr((1.0 / np.maximum(np.outer(cy, cx), 1)).astype(F).reshape(-1))]
    return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]), *extra)], 1)


def _unpad_copy(rows, n, npad):
    """A copy kernel from a (rows, npad) buffer to a (rows, n) one."""
    return Program(render_elementwise((rows, n), (n, 1), F, [((npad, 1), 0, F)], None))


def _plan_conv(node, shapes, dtypes, consts):
    if len(shapes[0]) != 4 or any(d != F for d in dtypes if d is not None):
        return None
    n, c, h, w = shapes[0]
    o, cg, kh, kw = shapes[1]
    group = int(_attr(node, "group", 1))
    strides = list(_attr(node, "strides", None) or [1, 1])
    dil = list(_attr(node, "dilations", None) or [1, 1])
    p = nops.conv_pads(node, (h, w), (kh, kw), strides, dil)
    pads = (p[0], p[1], p[2], p[3])
    oh = (h + p[0] + p[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + p[1] + p[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    has_bias = len(shapes) > 2 and shapes[2] is not None
    out = np.empty((n, o, oh, ow), F)
    if group == c and o == c and cg == 1:
        prog = Program(render_depthwise(c, h, w, (kh, kw), strides, pads, dil, has_bias))

        def dw_step(ins):
            x, wt = _arr(ins[0]), _arr(ins[1])
            extra = [_arr(ins[2])] if has_bias else []
            for i in range(n):
                prog(out[i], x[i], wt, *extra)
        return NodePlan([out], [dw_step], 1)
    og = o // group
    kk = cg * kh * kw
    P = oh * ow
    Np = padded_cols(P)
    gemm = Program(render_gemm(og, P, kk, (kk, 1), "row" if has_bias else "none",
                               batch=group, batch_strides=(og * Np, og * kk, kk * Np, og)))
    im2col = Program(render_im2col(c, h, w, (kh, kw), strides, pads, dil, group))
    cols = np.zeros(group * kk * Np, F)          # the padding columns stay zero
    cpad = np.empty((o, Np), F) if Np != P else None
    unpad = _unpad_copy(o, P, Np) if cpad is not None else None

    def step(ins):
        x, wt = _arr(ins[0]), _arr(ins[1])
        extra = [_arr(ins[2])] if has_bias else []
        for i in range(n):
            im2col(cols, x[i])
            if cpad is None:
                gemm(out[i], wt, cols, *extra)
            else:
                gemm(cpad, wt, cols, *extra)
                unpad(out[i], cpad)
    return NodePlan([out], [step], 3 if cpad is not None else 2)


def _packed_operand(b, const: bool, cache: dict, transpose: bool = False):
    """B packed as column panels; constant operands are packed once and kept."""
    if const and id(b) in cache:
        return cache[id(b)][1]
    packed = pack_b(b.T if transpose else b)
    if const:
        cache[id(b)] = (b, packed)       # holding b keeps its id from being reused
    return packed


def _gemm_core(M, N, K, a_strides, bias_kind):
    """A GEMM writing an (M, N) output: the kernel plus, for ragged N, a padded buffer."""
    Np = padded_cols(N)
    gemm = Program(render_gemm(M, N, K, a_strides, bias_kind))
    cpad = np.empty((M, Np), F) if Np != N else None
    unpad = _unpad_copy(M, N, Np) if cpad is not None else None

    def run(out2d, a, bpacked, *extra):
        if cpad is None:
            gemm(out2d, a, bpacked, *extra)
        else:
            gemm(cpad, a, bpacked, *extra)
            unpad(out2d, cpad)
    return run, Np


def _plan_gemm(node, shapes, dtypes, consts):
    if any(d != F for d in dtypes if d is not None) or float(_attr(node, "alpha", 1.0)) != 1.0:
        return None
    ta, tb = int(_attr(node, "transA", 0)), int(_attr(node, "transB", 0))
    a_shape, b_shape = shapes[0], shapes[1]
    M, K = (a_shape[1], a_shape[0]) if ta else a_shape
    N = b_shape[0] if tb else b_shape[1]
    beta = float(_attr(node, "beta", 1.0))
    has_c = len(shapes) > 2 and shapes[2] is not None
    bias_kind = "none"
    if has_c:
        bias_kind = "col" if tuple(shapes[2]) in ((N,), (1, N)) else "full"
    run, Np = _gemm_core(M, N, K, (1, M) if ta else (K, 1), bias_kind)
    out = np.empty((M, N), F)
    cache: dict = {}
    bias_cache: dict = {}

    def step(ins):
        bp = _packed_operand(ins[1], 1 in consts, cache, transpose=bool(tb))
        extra = []
        if has_c:
            cval = ins[2]
            if 2 in consts and id(cval) in bias_cache:
                padded = bias_cache[id(cval)][1]
            else:
                if bias_kind == "col":
                    padded = np.zeros(Np, F)
                    padded[:N] = cval.reshape(-1) * beta
                else:
                    padded = np.zeros((M, Np), F)
                    padded[:, :N] = np.broadcast_to(cval, (M, N)) * beta
                if 2 in consts:
                    bias_cache[id(cval)] = (cval, padded)
            extra = [padded]
        run(out, _arr(ins[0]), bp, *extra)
    return NodePlan([out], [step], 1)


def _plan_matmul(node, shapes, dtypes, consts):
    if any(d != F for d in dtypes):
        return None
    a, b = shapes
    if len(a) < 2 or len(b) != 2:
        return None
    K, N = b
    M = int(np.prod(a[:-1], dtype=np.int64))
    run, _ = _gemm_core(M, N, K, (K, 1), "none")
    out = np.empty(tuple(a[:-1]) + (N,), F)
    cache: dict = {}

    def step(ins):
        run(out.reshape(M, N), _arr(ins[0]), _packed_operand(ins[1], 1 in consts, cache))
    return NodePlan([out], [step], 1)


# ---------------------------------------------------------------------------------------------
# Data movement

def _copy_plan(out, parts):
    """``parts``: list of (input index, out view offset, out strides, shape, in offset, in strides)."""
    progs = []
    for idx, ooff, ostr, shape, ioff, istr in parts:
        if int(np.prod(shape, dtype=np.int64)) == 0:
            continue
        kern = render_elementwise(shape, ostr, out.dtype, [(istr, ioff, out.dtype)], None,
                                  out_offset=ooff)
        progs.append((idx, Program(kern)))

    def step(ins):
        flat = out.reshape(-1)
        for idx, prog in progs:
            prog(flat, _arr(ins[idx]))
    return NodePlan([out], [step], len(progs))


def _plan_transpose(node, shapes, dtypes, consts):
    shape = shapes[0]
    if dtypes[0] not in _COPY_TYPES:
        return None
    perm = list(_attr(node, "perm", None) or range(len(shape))[::-1])
    st = _contig(shape)
    out_shape = tuple(shape[p] for p in perm)
    out = np.empty(out_shape, dtypes[0])
    return _copy_plan(out, [(0, 0, _contig(out_shape), out_shape, 0,
                             tuple(st[p] for p in perm))])


def _plan_concat(node, shapes, dtypes, consts):
    if dtypes[0] not in _COPY_TYPES or any(d != dtypes[0] for d in dtypes):
        return None
    rank = len(shapes[0])
    axis = _attr(node, "axis", 0) % rank
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    out = np.empty(out_shape, dtypes[0])
    ost = _contig(out_shape)
    parts, off = [], 0
    for i, s in enumerate(shapes):
        parts.append((i, off * ost[axis], ost, tuple(s), 0, _contig(s)))
        off += s[axis]
    return _copy_plan(out, parts)


def _plan_slice(node, shapes, dtypes, consts):
    if dtypes[0] not in _COPY_TYPES or not all(i in consts for i in range(1, len(shapes))
                                               if shapes[i] is not None):
        return None
    shape = shapes[0]
    starts, ends = consts[1], consts[2]
    axes = consts.get(3, np.arange(len(starts)))
    steps = consts.get(4, np.ones(len(starts), np.int64))
    # The numpy path defines the clamping rules; derive offset and strides from its slice.
    probe = nops.Slice(node, np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape),
                       starts, ends, axes, steps)
    out = np.empty(probe.shape, dtypes[0])
    if probe.size == 0:
        return NodePlan([out], [], 0)
    st = _contig(shape)
    # Recover the start index and step of each axis from the probe.
    first = np.unravel_index(int(probe.reshape(-1)[0]), shape)
    in_strides = []
    for d in range(len(shape)):
        if probe.shape[d] > 1:
            sl = [0] * len(shape)
            sl[d] = 1
            nxt = np.unravel_index(int(probe[tuple(sl)]), shape)
            in_strides.append((nxt[d] - first[d]) * st[d])
        else:
            in_strides.append(0)
    offset = int(sum(f * s for f, s in zip(first, st)))
    return _copy_plan(out, [(0, 0, _contig(probe.shape), probe.shape, offset,
                             tuple(in_strides))])


def _plan_split(node, shapes, dtypes, consts):
    if dtypes[0] not in _COPY_TYPES:
        return None
    shape = shapes[0]
    axis = _attr(node, "axis", 0) % len(shape)
    split = consts.get(1)
    probe = nops.Split(node, np.zeros(shape, np.int8), split)
    st = _contig(shape)
    outs, steps, off = [], [], 0
    for p in probe:
        out = np.empty(p.shape, dtypes[0])
        sub = _copy_plan(out, [(0, 0, _contig(p.shape), p.shape, off * st[axis], st)])
        outs.append(out)
        steps += sub.steps
        off += p.shape[axis]
    return NodePlan(outs, steps, len(steps))


def _plan_pad(node, shapes, dtypes, consts):
    if _attr(node, "mode", "constant") != "constant" or dtypes[0] not in _COPY_TYPES:
        return None
    if any(i not in consts for i in range(1, len(shapes)) if shapes[i] is not None):
        return None
    shape = shapes[0]
    pads = consts.get(1, node.attrs.get("pads"))
    axes = consts.get(3)
    value = consts.get(2)
    rank = len(shape)
    axes = list(range(rank)) if axes is None else [int(a) % rank for a in axes]
    k = len(axes)
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = int(pads[i]), int(pads[i + k])
    if min(begin + end) < 0:
        return None
    out_shape = tuple(s + b + e for s, b, e in zip(shape, begin, end))
    v = 0 if value is None or np.size(value) == 0 else np.asarray(value).item()
    out = np.full(out_shape, v, dtypes[0])     # the border is written once, here
    ost = _contig(out_shape)
    offset = int(sum(b * s for b, s in zip(begin, ost)))
    plan = _copy_plan(out, [(0, offset, ost, tuple(shape), 0, _contig(shape))])
    return plan


def _plan_quant(node, shapes, dtypes, consts):
    shape = shapes[0]
    axis = _attr(node, "axis", 1) % max(len(shape), 1)

    def pshape(s):
        if s is None or int(np.prod(s)) <= 1:
            return ()
        full = [1] * len(shape)
        full[axis] = int(np.prod(s))
        return tuple(full)
    if len(shapes) > 1 and shapes[1] is not None and len(shapes[1]) > 1:
        return None      # blocked quantization
    s_shape = pshape(shapes[1])
    has_zp = len(shapes) > 2 and shapes[2] is not None
    if node.op == "QuantizeLinear":
        out_dtype = dtypes[2] if has_zp else np.dtype(np.uint8)
        if dtypes[0] != F or out_dtype not in (np.dtype(np.int8), np.dtype(np.uint8)):
            return None
        lo, hi = (-128.0, 127.0) if out_dtype == np.int8 else (0.0, 255.0)

        def expr(kb, m, x, s, zp=None):
            q = kb.call("llvm.rint.f32", kb.b.fdiv(x, s))
            if zp is not None:
                q = kb.b.fadd(q, zp)
            return m.min(m.max(q, _c(lo)), _c(hi))
        in_dtypes = [F, F] + ([out_dtype] if has_zp else [])
    else:
        if dtypes[0] not in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32)):
            return None
        out_dtype = F

        def expr(kb, m, x, s, zp=None):
            if zp is not None:
                x = kb.b.fsub(x, zp)
            return kb.b.fmul(x, s)
        in_dtypes = [dtypes[0], F] + ([dtypes[0]] if has_zp else [])
    in_shapes = [shape, s_shape] + ([pshape(shapes[2])] if has_zp else [])
    plan = _elementwise(shape, in_shapes, expr, out_dtype, in_dtypes)
    step = plan.steps[0]

    def run(ins):
        s = np.asarray(ins[1], F).reshape(s_shape)
        extra = [np.asarray(ins[2]).reshape(in_shapes[2])] if has_zp else []
        step([ins[0], s] + extra)
    plan.steps = [run]
    return plan


def _plan_resize(node, shapes, dtypes, consts):
    shape = shapes[0]
    if dtypes[0] != F or len(shape) != 4:
        return None
    mode = _attr(node, "mode", "nearest")
    ctm = _attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode not in ("nearest", "linear") or ctm == "tf_crop_and_resize" or \
            _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        return None
    if any(i not in consts for i in range(1, len(shapes)) if shapes[i] is not None):
        return None
    args = [consts.get(i) for i in range(1, len(shapes))]
    out_shape = nops.Resize(node, np.zeros(shape, F), *args).shape
    if out_shape[:2] != shape[:2]:
        return None
    scales = args[1] if len(args) > 1 and args[1] is not None and np.size(args[1]) else None
    sizes = args[2] if len(args) > 2 and args[2] is not None and np.size(args[2]) else None
    axes = node.attrs.get("axes")
    axes = list(range(4)) if axes is None or len(axes) == 0 else [int(a) % 4 for a in axes]
    tables = []
    for d in (2, 3):
        n_in, n_out = shape[d], out_shape[d]
        if sizes is not None or scales is None or d not in axes:
            scale = n_out / n_in
        else:
            scale = float(scales[axes.index(d)])
        coords = nops._resize_coords(ctm, n_out, n_in, scale)
        if mode == "nearest":
            tables.append([nops._nearest(coords, _attr(node, "nearest_mode",
                                                       "round_prefer_floor"), n_in)])
        else:
            c = np.clip(coords, 0, n_in - 1)
            lo = np.floor(c).astype(np.int64)
            tables.append([lo, np.minimum(lo + 1, n_in - 1), (c - lo).astype(F)])
    tables = [_arr(t) for t in tables[0] + tables[1]]
    oh, ow = out_shape[2:]
    prog = Program(render_resize2d(mode, shape[0] * shape[1], shape[2], shape[3], oh, ow))
    out = np.empty(out_shape, F)
    return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]), *tables)], 1)


_COPY_TYPES = {np.dtype(t) for t in (np.float32, np.int8, np.uint8, np.int32, np.int64)}

_PLANNERS = {}
for _op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu", "Clip", "Relu", "Sigmoid",
            "Tanh", "Exp", "Erf", "Neg", "Abs", "Sqrt", "Floor", "Ceil", "Reciprocal",
            "Identity", "Dropout", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Gelu"):
    _PLANNERS[_op] = _plan_elementwise
for _op in ("Softmax", "LogSoftmax", "LayerNormalization", "GlobalAveragePool",
            "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax"):
    _PLANNERS[_op] = _plan_rows
_PLANNERS.update({"MaxPool": _plan_pool, "AveragePool": _plan_pool, "Conv": _plan_conv,
                  "Gemm": _plan_gemm, "MatMul": _plan_matmul, "Transpose": _plan_transpose,
                  "Concat": _plan_concat, "Slice": _plan_slice, "Split": _plan_split,
                  "Pad": _plan_pad, "QuantizeLinear": _plan_quant,
                  "DequantizeLinear": _plan_quant, "Resize": _plan_resize})

#: Operators the LLVM path can compile (for some of their modes and dtypes).
LLVM_OPS = sorted(_PLANNERS)


def plan_node(node, shapes, dtypes, consts: dict):
    """A :class:`NodePlan` running ``node`` on compiled kernels, or ``None`` if not covered.

    ``shapes``/``dtypes`` list the static input types (``None`` for omitted inputs);
    ``consts`` maps input positions to the values of constant inputs.
    """
    planner = _PLANNERS.get(node.op)
    if planner is None or node.domain not in ("", "ai.onnx"):
        return None
    dtypes = [np.dtype(d) if d is not None else None for d in dtypes]
    shapes = [tuple(s) if s is not None else None for s in shapes]
    return planner(node, shapes, dtypes, consts)


def _layout_parts(n, c, h, w, batch, block):
    """Rectangular copies between NCHW and (N/B, C/BI, H, W, B, BI): one per full/partial block
    combination, each a 6-D strided copy ``(nb, b, cb, bi, h, w)``."""
    cb_total = -(-c // block)
    pst = _contig((-(-n // batch), cb_total, h, w, batch, block))
    xst = _contig((n, c, h, w))
    parts = []
    for n0, nb, bsz in ((0, n // batch, batch), (n // batch * batch, 1 if n % batch else 0,
                                                 n % batch)):
        for c0, cbn, csz in ((0, c // block, block), (c // block * block, 1 if c % block else 0,
                                                      c % block)):
            if nb == 0 or cbn == 0:
                continue
            shape = (nb, bsz, cbn, csz, h, w)
            packed_off = (n0 // batch) * pst[0] + (c0 // block) * pst[1]
            packed_str = (pst[0], pst[4], pst[1], pst[5], pst[2], pst[3])
            x_off = n0 * xst[0] + c0 * xst[1]
            x_str = (batch * xst[0], xst[0], block * xst[1], xst[1], xst[2], xst[3])
            parts.append((shape, packed_off, packed_str, x_off, x_str))
    return parts


def plan_pack(shape, cfg):
    """A compiled ``pack_activation`` for int8 NCHW/NC ``shape`` (see ``compiler/layout.py``):
    returns ``(out, fn)`` where ``fn(x)`` fills ``out`` (zero padding written once)."""
    n, c, h, w = tuple(shape) + (1,) * (4 - len(shape))
    b, bi = cfg.batch, cfg.block_in
    out = np.zeros((-(-n // b), -(-c // bi), h, w, b, bi), np.int8)
    parts = [(0, poff, pst, shp, xoff, xst)
             for shp, poff, pst, xoff, xst in _layout_parts(n, c, h, w, b, bi)]
    plan = _copy_plan(out, parts)
    return out, lambda x: plan([np.ascontiguousarray(x, np.int8)])


def plan_unpack(shape, cfg):
    """A compiled ``unpack_activation``: returns ``(out, fn)`` where ``fn(packed)`` fills the
    int8 array ``out`` of logical ``shape`` from a packed int8 buffer."""
    n, c, h, w = tuple(shape) + (1,) * (4 - len(shape))
    b, bi = cfg.batch, cfg.block_out
    out = np.empty(tuple(shape), np.int8)
    parts = [(0, xoff, xst, shp, poff, pst)
             for shp, poff, pst, xoff, xst in _layout_parts(n, c, h, w, b, bi)]
    plan = _copy_plan(out, parts)
    return out, lambda buf: plan([np.asarray(buf).view(np.int8).reshape(-1)])


