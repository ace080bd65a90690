"""ONNX operators in numpy, part 2: matrix products, convolution, pooling and resize.

Registered into :data:`~pyvta.runtime.cpu.numpy_ops.OPS` on import (``numpy_ops`` imports
this module), with the same conventions: one function per ONNX operator taking
``(node, *inputs)``.
"""

from __future__ import annotations

import math

import numpy as np

from .numpy_ops import UnsupportedOpError, _attr, _op

__all__ = ["conv_pads", "pool_output_shape", "MaxPool", "Resize"]

# ---------------------------------------------------------------------------------------------
# Linear algebra and convolution

@_op("MatMul")
def MatMul(node, a, b):
    return np.matmul(a, b)


@_op("Gemm")
def Gemm(node, a, b, c=None):
    if _attr(node, "transA", 0):
        a = a.T
    if _attr(node, "transB", 0):
        b = b.T
    y = _attr(node, "alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + _attr(node, "beta", 1.0) * c
    return y.astype(a.dtype)


def conv_pads(node, in_spatial, kernel, strides, dilations) -> list:
    """Explicit ``[begin..., end...]`` pads of a Conv/Pool node, resolving ``auto_pad``."""
    k = len(in_spatial)
    auto = _attr(node, "auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * k)
        for i in range(k):
            out = -(-in_spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1
                        - in_spatial[i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + k] = (small, big) if auto == "SAME_UPPER" else (big, small)
        return pads
    if auto == "VALID":
        return [0] * (2 * k)
    pads = node.attrs.get("pads")
    return [0] * (2 * k) if pads is None or len(pads) == 0 else [int(p) for p in pads]


def _conv_core(x, w, strides, dilations, pads, groups):
    """N-D convolution by im2col + one matmul per group (x: N C *S, w: O C/g *K)."""
    k = x.ndim - 2
    kernel = w.shape[2:]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + k]) for i in range(k)])
    out_sp = [(xp.shape[2 + i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
              for i in range(k)]
    n, c = x.shape[:2]
    o = w.shape[0]
    cg, og = c // groups, o // groups
    # cols: N, C, *K, *OUT
    cols = np.empty((n, c) + tuple(kernel) + tuple(out_sp), x.dtype)
    for kidx in np.ndindex(*kernel):
        sl = tuple(slice(kidx[i] * dilations[i],
                         kidx[i] * dilations[i] + strides[i] * (out_sp[i] - 1) + 1, strides[i])
                   for i in range(k))
        cols[(slice(None), slice(None)) + kidx] = xp[(slice(None), slice(None)) + sl]
    ksz = int(np.prod(kernel, dtype=np.int64))
    osz = int(np.prod(out_sp, dtype=np.int64))
    cols = cols.reshape(n, groups, cg * ksz, osz)
    wm = w.reshape(groups, og, cg * ksz)
    y = np.einsum("gok,ngkp->ngop", wm, cols, optimize=True)
    return y.reshape((n, o) + tuple(out_sp))


@_op("Conv")
def Conv(node, x, w, b=None):
    k = x.ndim - 2
    kernel = list(w.shape[2:])
    strides = list(_attr(node, "strides", None) or [1] * k)
    dilations = list(_attr(node, "dilations", None) or [1] * k)
    pads = conv_pads(node, x.shape[2:], kernel, strides, dilations)
    y = _conv_core(x, w, strides, dilations, pads, int(_attr(node, "group", 1)))
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * k)
    return y.astype(x.dtype)


@_op("ConvTranspose")
def ConvTranspose(node, x, w, b=None):
    k = x.ndim - 2
    group = int(_attr(node, "group", 1))
    kernel = list(w.shape[2:])
    strides = list(_attr(node, "strides", None) or [1] * k)
    dil = list(_attr(node, "dilations", None) or [1] * k)
    out_pad = list(_attr(node, "output_padding", None) or [0] * k)
    n, c = x.shape[:2]
    og = w.shape[1]
    full = [(x.shape[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 + out_pad[i]
            for i in range(k)]
    out_shape = _attr(node, "output_shape", None)
    pads = _attr(node, "pads", None)
    auto = _attr(node, "auto_pad", "NOTSET")
    if out_shape is not None and len(out_shape):
        out_shape = list(out_shape)[-k:]
        total = [full[i] - out_shape[i] for i in range(k)]
        if auto == "SAME_LOWER":
            pads = [total[i] - total[i] // 2 for i in range(k)] + [total[i] // 2 for i in range(k)]
        else:
            pads = [total[i] // 2 for i in range(k)] + [total[i] - total[i] // 2 for i in range(k)]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        target = [x.shape[2 + i] * strides[i] for i in range(k)]
        total = [full[i] - target[i] for i in range(k)]
        if auto == "SAME_UPPER":
            pads = [total[i] // 2 for i in range(k)] + [total[i] - total[i] // 2 for i in range(k)]
        else:
            pads = [total[i] - total[i] // 2 for i in range(k)] + [total[i] // 2 for i in range(k)]
    elif pads is None or len(pads) == 0:
        pads = [0] * (2 * k)
    y = np.zeros((n, og * group) + tuple(full), np.result_type(x, w))
    cg = c // group
    for g in range(group):
        xs = x[:, g * cg:(g + 1) * cg]
        ws = w[g * cg:(g + 1) * cg]               # C/g, O/g, *K
        for kidx in np.ndindex(*kernel):
            contrib = np.einsum("nc...,co->no...", xs, ws[(slice(None), slice(None)) + kidx])
            sl = tuple(slice(kidx[i] * dil[i], kidx[i] * dil[i]
                             + strides[i] * (x.shape[2 + i] - 1) + 1, strides[i])
                       for i in range(k))
            y[(slice(None), slice(g * og, (g + 1) * og)) + sl] += contrib
    crop = tuple(slice(pads[i], full[i] - pads[i + k]) for i in range(k))
    y = y[(slice(None), slice(None)) + crop]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * k)
    return np.ascontiguousarray(y.astype(x.dtype))


# ---------------------------------------------------------------------------------------------
# Pooling

def pool_output_shape(in_spatial, kernel, strides, pads, dilations, ceil_mode) -> list:
    """Spatial output shape of a pooling window (ONNX rules, incl. ``ceil_mode``)."""
    k = len(in_spatial)
    out = []
    for i in range(k):
        span = in_spatial[i] + pads[i] + pads[i + k] - dilations[i] * (kernel[i] - 1) - 1
        o = (-(-span // strides[i]) if ceil_mode else span // strides[i]) + 1
        # A window that would start inside the end padding only is dropped (ceil_mode rule).
        if ceil_mode and (o - 1) * strides[i] >= in_spatial[i] + pads[i]:
            o -= 1
        out.append(o)
    return out


def _pool(node, x, reducer):
    k = x.ndim - 2
    kernel = list(_attr(node, "kernel_shape"))
    strides = list(_attr(node, "strides", None) or [1] * k)
    dil = list(_attr(node, "dilations", None) or [1] * k)
    ceil_mode = int(_attr(node, "ceil_mode", 0))
    pads = conv_pads(node, x.shape[2:], kernel, strides, dil)
    out_sp = pool_output_shape(x.shape[2:], kernel, strides, pads, dil, ceil_mode)
    # Pad generously on the end so ceil-mode windows fit; the extra cells are masked out.
    extra = [max(0, (out_sp[i] - 1) * strides[i] + dil[i] * (kernel[i] - 1) + 1
                 - (x.shape[2 + i] + pads[i] + pads[i + k])) for i in range(k)]
    width = [(0, 0), (0, 0)] + [(pads[i], pads[i + k] + extra[i]) for i in range(k)]
    xv = np.pad(x.astype(np.float64), width, constant_values=np.nan)
    # valid: 1 inside the original data, 2 inside explicit padding, 0 beyond (ceil extras)
    mask = np.pad(np.ones(x.shape[2:], np.int8), [(p[0], p[1]) for p in width[2:]],
                  constant_values=2)
    for i in range(k):
        idx = [slice(None)] * k
        idx[i] = slice(x.shape[2 + i] + pads[i] + pads[i + k], None)
        mask[tuple(idx)] = 0
    windows, mwin = [], []
    for kidx in np.ndindex(*kernel):
        sl = tuple(slice(kidx[i] * dil[i], kidx[i] * dil[i] + strides[i] * (out_sp[i] - 1) + 1,
                         strides[i]) for i in range(k))
        windows.append(xv[(slice(None), slice(None)) + sl])
        mwin.append(mask[sl])
    return reducer(np.stack(windows), np.stack(mwin)).astype(x.dtype)


@_op("MaxPool")
def MaxPool(node, x):
    y = _pool(node, x, lambda w, m: np.nanmax(np.where(np.isnan(w), -np.inf, w), axis=0))
    if len(node.outputs) > 1 and node.outputs[1]:
        return [y, _maxpool_indices(node, x, y)]
    return y


def _maxpool_indices(node, x, y):
    """Flat indices (row-major, or column-major over H, W with ``storage_order=1``) of each
    window's first maximum."""
    k = x.ndim - 2
    kernel = list(_attr(node, "kernel_shape"))
    strides = list(_attr(node, "strides", None) or [1] * k)
    dil = list(_attr(node, "dilations", None) or [1] * k)
    pads = conv_pads(node, x.shape[2:], kernel, strides, dil)
    spatial = x.shape[2:]
    best = np.full(y.shape, -1, np.int64)
    found = np.zeros(y.shape, bool)
    grids = np.meshgrid(*[np.arange(o) for o in y.shape[2:]], indexing="ij")
    for kidx in np.ndindex(*kernel):
        pos = [g * strides[i] - pads[i] + kidx[i] * dil[i] for i, g in enumerate(grids)]
        valid = np.all([(p >= 0) & (p < spatial[i]) for i, p in enumerate(pos)], axis=0)
        clipped = [np.clip(p, 0, spatial[i] - 1) for i, p in enumerate(pos)]
        vals = x[(slice(None), slice(None)) + tuple(clipped)]
        hit = valid & (vals == y) & ~found
        if _attr(node, "storage_order", 0) and k == 2:
            flat = clipped[0] + clipped[1] * spatial[0]
        else:
            flat = np.ravel_multi_index(tuple(clipped), spatial)
        best = np.where(hit, flat, best)
        found |= hit
    plane = int(np.prod(spatial))
    base = (np.arange(x.shape[0])[:, None] * x.shape[1] + np.arange(x.shape[1])[None, :]) * plane
    return best + base.reshape(base.shape + (1,) * k)


@_op("AveragePool")
def AveragePool(node, x):
    include = int(_attr(node, "count_include_pad", 0))

    def avg(w, m):
        vals = np.nan_to_num(w, nan=0.0)
        counted = (m == 1) | ((m == 2) & bool(include))
        count = counted.sum(axis=0)
        return vals.sum(axis=0) / np.maximum(count, 1)
    return _pool(node, x, avg)


@_op("LpPool")
def LpPool(node, x):
    p = _attr(node, "p", 2)
    return _pool(node, x, lambda w, m: np.nansum(np.abs(w) ** p, axis=0) ** (1.0 / p))


@_op("GlobalAveragePool")
def GlobalAveragePool(node, x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)


@_op("GlobalMaxPool")
def GlobalMaxPool(node, x):
    return x.max(axis=tuple(range(2, x.ndim)), keepdims=True)


# ---------------------------------------------------------------------------------------------
# Resize

def _resize_coords(mode, out_len, in_len, scale, roi_lo=0.0, roi_hi=1.0):
    o = np.arange(out_len, dtype=np.float64)
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    if mode == "align_corners":
        # The spec divides by (in_len * scale - 1), not (out_len - 1): they differ when
        # in_len * scale is not an integer.
        span = in_len * scale - 1
        return o * (in_len - 1) / span if span > 0 else np.zeros(out_len)
    if mode == "asymmetric":
        return o / scale
    if mode == "half_pixel_symmetric":
        adj = out_len / (scale * in_len)
        center = in_len / 2
        offset = center * (1 - adj)
        return offset + (o + 0.5) / scale - 0.5
    if mode == "tf_crop_and_resize":
        if out_len > 1:
            return roi_lo * (in_len - 1) + o * (roi_hi - roi_lo) * (in_len - 1) / (out_len - 1)
        return np.full(out_len, 0.5 * (roi_lo + roi_hi) * (in_len - 1))
    raise UnsupportedOpError(f"Resize coordinate_transformation_mode {mode!r} is not supported")


def _nearest(coords, mode, in_len):
    if mode == "round_prefer_floor":
        idx = np.where(coords - np.floor(coords) == 0.5, np.floor(coords), np.round(coords))
    elif mode == "round_prefer_ceil":
        idx = np.floor(coords + 0.5)
    elif mode == "floor":
        idx = np.floor(coords)
    elif mode == "ceil":
        idx = np.ceil(coords)
    else:
        raise UnsupportedOpError(f"Resize nearest_mode {mode!r} is not supported")
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def _cubic_axis(y, axis, coords, n_in, A, exclude_outside):
    """Keys cubic interpolation along one axis (edge-replicated or outside taps excluded)."""
    base = np.floor(coords).astype(np.int64)
    t = coords - base
    ws = []
    for k, d in enumerate((t + 1, t, 1 - t, 2 - t)):
        d = np.abs(d)
        ws.append(np.where(d <= 1, ((A + 2) * d - (A + 3)) * d * d + 1,
                           ((A * d - 5 * A) * d + 8 * A) * d - 4 * A))
    idx = [base - 1, base, base + 1, base + 2]
    if exclude_outside:
        ws = [np.where((i < 0) | (i >= n_in), 0.0, w) for i, w in zip(idx, ws)]
        total = sum(ws)
        ws = [w / total for w in ws]
    bshape = [-1 if i == axis else 1 for i in range(y.ndim)]
    out = 0
    for i, w in zip(idx, ws):
        out = out + np.take(y, np.clip(i, 0, n_in - 1), axis=axis) * w.reshape(bshape)
    return out


@_op("Resize", "Upsample")
def Resize(node, x, roi=None, scales=None, sizes=None):
    if node.op == "Upsample":
        scales, roi = roi, None
    mode = _attr(node, "mode", "nearest")
    ctm = _attr(node, "coordinate_transformation_mode",
                "asymmetric" if node.op == "Upsample" else "half_pixel")
    nmode = _attr(node, "nearest_mode", "round_prefer_floor")
    axes = node.attrs.get("axes")
    if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise UnsupportedOpError("Resize keep_aspect_ratio_policy other than 'stretch'")
    axes = list(range(x.ndim)) if axes is None or len(axes) == 0 else [int(a) % x.ndim
                                                                       for a in axes]
    full_scales = [1.0] * x.ndim
    out_shape = list(x.shape)
    if sizes is not None and len(sizes):
        for a, s in zip(axes, sizes):
            out_shape[a] = int(s)
            full_scales[a] = int(s) / x.shape[a]
    elif scales is not None and len(scales):
        for a, s in zip(axes, scales):
            full_scales[a] = float(s)
            out_shape[a] = int(math.floor(x.shape[a] * float(s)))
    roi_full = [(0.0, 1.0)] * x.ndim
    if roi is not None and len(roi) and ctm == "tf_crop_and_resize":
        r = [float(v) for v in roi]
        half = len(r) // 2
        for i, a in enumerate(axes):
            roi_full[a] = (r[i], r[i + half])
    extrapolate = float(_attr(node, "extrapolation_value", 0.0))
    y = x.astype(np.float64) if mode != "nearest" else x
    for a in range(x.ndim):
        if out_shape[a] == x.shape[a] and full_scales[a] == 1.0 and ctm != "tf_crop_and_resize":
            continue
        coords = _resize_coords(ctm, out_shape[a], x.shape[a], full_scales[a], *roi_full[a])
        n_in = x.shape[a]
        bshape = [-1 if i == a else 1 for i in range(x.ndim)]
        if mode == "nearest":
            y = np.take(y, _nearest(coords, nmode, n_in), axis=a)
        elif mode == "linear":
            c = np.clip(coords, 0, n_in - 1)
            lo = np.floor(c).astype(np.int64)
            hi = np.minimum(lo + 1, n_in - 1)
            frac = (c - lo).reshape(bshape)
            y = np.take(y, lo, axis=a) * (1 - frac) + np.take(y, hi, axis=a) * frac
        elif mode == "cubic":
            y = _cubic_axis(y, a, coords, n_in, float(_attr(node, "cubic_coeff_a", -0.75)),
                            bool(_attr(node, "exclude_outside", 0)))
        else:
            raise UnsupportedOpError(f"Resize mode {mode!r} is not supported "
                                     f"(nearest, linear, cubic)")
        if ctm == "tf_crop_and_resize":
            outside = (coords < 0) | (coords > n_in - 1)
            if outside.any():
                y = np.where(outside.reshape(bshape), extrapolate, y)
    return np.asarray(y).astype(x.dtype)
