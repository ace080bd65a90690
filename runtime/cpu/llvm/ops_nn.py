"""Planners for the dense operators: pooling, convolution, Gemm/MatMul, Resize, and the
accelerator's activation layout (packing/unpacking), on the kernels of :mod:`.linalg`."""

from __future__ import annotations

import numpy as np

from .. import numpy_ops as nops
from . import buffers
from .linalg import (pack_b, pack_gemv, padded_cols, render_depthwise, render_gemm,
                     render_gemv, render_im2col, render_pool2d, render_resize2d)
from .plan import F, BoundCall, NodePlan, _arr, _attr, _contig, _copy_plan
from .program import Program
from .renderer import render_elementwise

__all__ = ["plan_pool", "plan_conv", "plan_gemm", "plan_matmul", "plan_resize", "plan_pack",
           "plan_unpack"]



def _pool_geometry(node, shape):
    kernel = list(_attr(node, "kernel_shape"))
    strides = list(_attr(node, "strides", None) or [1, 1])
    dil = list(_attr(node, "dilations", None) or [1, 1])
    pads = nops.conv_pads(node, shape[2:], kernel, strides, dil)
    out_hw = nops.pool_output_shape(shape[2:], kernel, strides, pads, dil,
                                    int(_attr(node, "ceil_mode", 0)))
    return kernel, strides, dil, pads, out_hw


def plan_pool(node, shapes, dtypes, consts):
    shape = shapes[0]
    if dtypes[0] != F or len(shape) != 4 or (len(node.outputs) > 1 and node.outputs[1]):
        return None
    kernel, strides, dil, pads, (oh, ow) = _pool_geometry(node, shape)
    n, c, h, w = shape
    kind = "max" if node.op == "MaxPool" else "avg"
    prog = Program(render_pool2d(kind, n * c, h, w, (oh, ow), kernel, strides, pads, dil))
    out = buffers.empty((n, c, oh, ow), F)
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


def plan_conv(node, shapes, dtypes, consts):
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
    out = buffers.empty((n, o, oh, ow), F)
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
    cols = buffers.zeros(group * kk * Np, F)          # the padding columns stay zero
    cpad = buffers.empty((o, Np), F) if Np != P else None
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


def _packed_operand(b, const: bool, cache: dict, transpose: bool = False, pack=pack_b):
    """B packed by ``pack`` (column panels, or GEMV blocks); constant operands are packed
    once and kept."""
    if const and id(b) in cache:
        return cache[id(b)][1]
    packed = pack(b.T if transpose else b)
    if const:
        cache[id(b)] = (b, packed)       # holding b keeps its id from being reused
    return packed


def _gemm_core(M, N, K, a_strides, bias_kind):
    """A GEMM writing an (M, N) output: returns ``(run, Np, out, pack)`` where ``run(a,
    pack(b), *extra)`` fills the (M, N) array ``out``. The kernel writes whole 16-column
    panels: for ragged N it writes a padded buffer, copied out (or, for one row, the output
    is a view of that padded row: no copy). One row (a classifier's GEMV) gets its own kernel
    and weight layout (:func:`.linalg.render_gemv`)."""
    Np = padded_cols(N)
    if M == 1:
        gemm, pack = Program(render_gemv(N, K, a_strides[1], bias_kind)), pack_gemv
    else:
        gemm, pack = Program(render_gemm(M, N, K, a_strides, bias_kind)), pack_b
    # BoundCall remembers the buffer addresses while the same operands come back (constant
    # packed weights and bias, a session's activation buffers): a GEMV of 50 us then pays
    # about a microsecond of Python per call instead of several.
    if Np == N:
        out = buffers.empty((M, N), F)
        call = BoundCall(gemm, [out])
        return (lambda a, bpacked, *extra: call((a, bpacked) + extra)), Np, out, pack
    cpad = buffers.empty((M, Np), F)
    call = BoundCall(gemm, [cpad])
    if M == 1:
        return (lambda a, bpacked, *extra: call((a, bpacked) + extra)), Np, cpad[:, :N], pack
    out = buffers.empty((M, N), F)
    unpad = _unpad_copy(M, N, Np)

    def run(a, bpacked, *extra):
        call((a, bpacked) + extra)
        unpad(out, cpad)
    return run, Np, out, pack


def plan_gemm(node, shapes, dtypes, consts):
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
    run, Np, out, pack = _gemm_core(M, N, K, (1, M) if ta else (K, 1), bias_kind)
    cache: dict = {}
    bias_cache: dict = {}

    def step(ins):
        bp = _packed_operand(ins[1], 1 in consts, cache, transpose=bool(tb), pack=pack)
        extra = []
        if has_c:
            cval = ins[2]
            if 2 in consts and id(cval) in bias_cache:
                padded = bias_cache[id(cval)][1]
            else:
                if bias_kind == "col":
                    padded = buffers.zeros(Np, F)
                    padded[:N] = cval.reshape(-1) * beta
                else:
                    padded = buffers.zeros((M, Np), F)
                    padded[:, :N] = np.broadcast_to(cval, (M, N)) * beta
                if 2 in consts:
                    bias_cache[id(cval)] = (cval, padded)
            extra = [padded]
        run(_arr(ins[0]), bp, *extra)
    return NodePlan([out], [step], 1)


def plan_matmul(node, shapes, dtypes, consts):
    if any(d != F for d in dtypes):
        return None
    a, b = shapes
    if len(a) < 2 or len(b) != 2:
        return None
    K, N = b
    M = int(np.prod(a[:-1], dtype=np.int64))
    run, _, out2d, pack = _gemm_core(M, N, K, (K, 1), "none")
    out = out2d.reshape(tuple(a[:-1]) + (N,))      # a view (out2d's rows are contiguous)
    cache: dict = {}

    def step(ins):
        run(_arr(ins[0]), _packed_operand(ins[1], 1 in consts, cache, pack=pack))
    return NodePlan([out], [step], 1)


def plan_resize(node, shapes, dtypes, consts):
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
    scales = args[1] if len(args) > 1 and args[1] is not None and np.size(args[1]) else None
    sizes = args[2] if len(args) > 2 and args[2] is not None and np.size(args[2]) else None
    axes = node.attrs.get("axes")
    axes = list(range(4)) if axes is None or len(axes) == 0 else [int(a) % 4 for a in axes]
    # Output shape by the rules of numpy_ops.Resize (floor(in * scale), or the sizes).
    out_shape = list(shape)
    for k, a in enumerate(axes):
        if sizes is not None:
            out_shape[a] = int(sizes[k])
        elif scales is not None:
            out_shape[a] = int(np.floor(shape[a] * float(scales[k])))
    out_shape = tuple(out_shape)
    if out_shape[:2] != tuple(shape[:2]):
        return None
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
    out = buffers.empty(out_shape, F)
    return NodePlan([out], [lambda ins: prog(out, _arr(ins[0]), *tables)], 1)


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
    out = buffers.zeros((-(-n // b), -(-c // bi), h, w, b, bi), np.int8)
    parts = [(0, poff, pst, shp, xoff, xst)
             for shp, poff, pst, xoff, xst in _layout_parts(n, c, h, w, b, bi)]
    plan = _copy_plan(out, parts)
    return out, lambda x: plan([np.ascontiguousarray(x, np.int8)])


def plan_unpack(shape, cfg):
    """A compiled ``unpack_activation``: returns ``(out, fn)`` where ``fn(packed)`` fills the
    int8 array ``out`` of logical ``shape`` from a packed int8 buffer."""
    n, c, h, w = tuple(shape) + (1,) * (4 - len(shape))
    b, bi = cfg.batch, cfg.block_out
    out = buffers.empty(tuple(shape), np.int8)
    parts = [(0, xoff, xst, shp, poff, pst)
             for shp, poff, pst, xoff, xst in _layout_parts(n, c, h, w, b, bi)]
    plan = _copy_plan(out, parts)
    return out, lambda buf: plan([np.asarray(buf).view(np.int8).reshape(-1)])
