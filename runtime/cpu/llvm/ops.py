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
from . import buffers
from .ops_nn import (plan_conv, plan_gemm, plan_matmul, plan_pack, plan_pool, plan_resize,
                     plan_unpack)
from .plan import (COPY_TYPES, F, BoundCall, NodePlan, _arr, _attr, _bcast_strides, _contig,
                   _copy_plan)
from .program import Program
from .renderer import render_elementwise, render_rows, render_softmax_axis

__all__ = ["NodePlan", "plan_node", "LLVM_OPS", "plan_pack", "plan_unpack"]


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
    out = buffers.empty(out_shape, out_dtype)
    in_dtypes = in_dtypes or [F] * len(in_shapes)
    kern = render_elementwise(out_shape, _contig(out_shape), out_dtype,
                              [(_bcast_strides(s, out_shape), 0, d)
                               for s, d in zip(in_shapes, in_dtypes)], expr, cost=cost)
    step = BoundCall(Program(kern), [out])
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
            out = buffers.empty(shape, F)
            scratch = buffers.empty(outer * 2 * inner, F)
            return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]), scratch)], 1)
        rows, length = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
        prog = Program(render_rows(node.op.lower(), rows, length))
        out = buffers.empty(shape, F)
        return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]))], 1)
    if node.op == "LayerNormalization":
        if len([o for o in node.outputs if o]) > 1:
            return None
        axis = _attr(node, "axis", -1) % len(shape)
        rows = int(np.prod(shape[:axis], dtype=np.int64))
        length = int(np.prod(shape[axis:], dtype=np.int64))
        prog = Program(render_rows("layernorm", rows, length, float(_attr(node, "epsilon", 1e-5))))
        out = buffers.empty(shape, F)
        zeros = buffers.zeros(length, F)

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
        out = buffers.empty(out_shape, F)
        return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]))], 1)
    if node.op == "GlobalAveragePool" or node.op == "GlobalMaxPool":
        rows = shape[0] * shape[1]
        length = int(np.prod(shape[2:], dtype=np.int64))
        prog = Program(render_rows("mean" if node.op == "GlobalAveragePool" else "max",
                                   rows, length))
        out = buffers.empty(shape[:2] + (1,) * (len(shape) - 2), F)
        return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]))], 1)
    return None


# ---------------------------------------------------------------------------------------------
# Data movement

def _plan_transpose(node, shapes, dtypes, consts):
    shape = shapes[0]
    if dtypes[0] not in COPY_TYPES:
        return None
    perm = list(_attr(node, "perm", None) or range(len(shape))[::-1])
    st = _contig(shape)
    out_shape = tuple(shape[p] for p in perm)
    out = buffers.empty(out_shape, dtypes[0])
    return _copy_plan(out, [(0, 0, _contig(out_shape), out_shape, 0,
                             tuple(st[p] for p in perm))])


def _plan_concat(node, shapes, dtypes, consts):
    if dtypes[0] not in COPY_TYPES or any(d != dtypes[0] for d in dtypes):
        return None
    rank = len(shapes[0])
    axis = _attr(node, "axis", 0) % rank
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    out = buffers.empty(out_shape, dtypes[0])
    ost = _contig(out_shape)
    parts, off = [], 0
    for i, s in enumerate(shapes):
        parts.append((i, off * ost[axis], ost, tuple(s), 0, _contig(s)))
        off += s[axis]
    return _copy_plan(out, parts)


def _plan_slice(node, shapes, dtypes, consts):
    if dtypes[0] not in COPY_TYPES or not all(i in consts for i in range(1, len(shapes))
                                               if shapes[i] is not None):
        return None
    shape = shapes[0]
    starts, ends = consts[1], consts[2]
    axes = consts.get(3, np.arange(len(starts)))
    steps = consts.get(4, np.ones(len(starts), np.int64))
    # The numpy path defines the clamping rules: apply it to one index vector per axis to
    # get that axis's first index, step and length (no full-size probe array).
    rank = len(shape)
    first, step, count = [0] * rank, [1] * rank, list(shape)
    for s_, e_, a_, st_ in zip(starts, ends, axes, steps):
        a_ = int(a_) % rank
        idx = nops.Slice(node, np.arange(shape[a_], dtype=np.int64), [s_], [e_], [0], [st_])
        count[a_] = idx.size
        if idx.size:
            first[a_] = int(idx[0])
            step[a_] = int(idx[1] - idx[0]) if idx.size > 1 else 1
    out = buffers.empty(tuple(count), dtypes[0])
    if out.size == 0:
        return NodePlan([out], [], 0)
    st = _contig(shape)
    in_strides = [step[d] * st[d] if count[d] > 1 else 0 for d in range(rank)]
    offset = int(sum(f * s_ for f, s_ in zip(first, st)))
    probe = out
    return _copy_plan(out, [(0, 0, _contig(probe.shape), probe.shape, offset,
                             tuple(in_strides))])


def _plan_split(node, shapes, dtypes, consts):
    if dtypes[0] not in COPY_TYPES:
        return None
    shape = shapes[0]
    axis = _attr(node, "axis", 0) % len(shape)
    split = consts.get(1)
    probe = nops.Split(node, np.zeros(shape, np.int8), split)
    st = _contig(shape)
    outs, steps, off = [], [], 0
    for p in probe:
        out = buffers.empty(p.shape, dtypes[0])
        sub = _copy_plan(out, [(0, 0, _contig(p.shape), p.shape, off * st[axis], st)])
        outs.append(out)
        steps += sub.steps
        off += p.shape[axis]
    return NodePlan(outs, steps, len(steps))


def _plan_pad(node, shapes, dtypes, consts):
    if _attr(node, "mode", "constant") != "constant" or dtypes[0] not in COPY_TYPES:
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


_PLANNERS = {}
for _op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "PRelu", "Clip", "Relu", "Sigmoid",
            "Tanh", "Exp", "Erf", "Neg", "Abs", "Sqrt", "Floor", "Ceil", "Reciprocal",
            "Identity", "Dropout", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Gelu"):
    _PLANNERS[_op] = _plan_elementwise
for _op in ("Softmax", "LogSoftmax", "LayerNormalization", "GlobalAveragePool",
            "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax"):
    _PLANNERS[_op] = _plan_rows
_PLANNERS.update({"MaxPool": plan_pool, "AveragePool": plan_pool, "Conv": plan_conv,
                  "Gemm": plan_gemm, "MatMul": plan_matmul, "Transpose": _plan_transpose,
                  "Concat": _plan_concat, "Slice": _plan_slice, "Split": _plan_split,
                  "Pad": _plan_pad, "QuantizeLinear": _plan_quant,
                  "DequantizeLinear": _plan_quant, "Resize": plan_resize})

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
