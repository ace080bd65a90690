"""Packed DRAM layouts of activations and weights for the accelerator.

Activations (int8, logical NCHW or NC) are stored as
``(N/BATCH, C/BLOCK_IN, H, W, BATCH, BLOCK_IN)``: one INP element (``BATCH x BLOCK_IN`` int8) per
``(n-block, c-block, h, w)``, so a LOAD of one image row of one channel block is a contiguous run
of ``W`` elements. Channels and batch are zero-padded up to whole blocks. Outputs use the same
layout with BLOCK_OUT (equal to BLOCK_IN in every configuration), so one operator's output is the
next one's input without any rearrangement.

Weights (int8 OIHW) are stored as ``(O/BLOCK_OUT, I/BLOCK_IN, kh, kw, BLOCK_OUT, BLOCK_IN)``.

The first layer of a network often has 3 (or 1) input channels: packed as above it would use
3/16 of the GEMM core. :func:`im2col` folds ``C x kh x kw`` into the channel dimension on the CPU
side (the program input is then the im2col tensor, a 1x1 convolution of it gives the result), so
the reduction is ``ceil(C*kh*kw / BLOCK_IN)`` blocks instead of ``C/BLOCK_IN*kh*kw``.
"""

from __future__ import annotations

import numpy as np

from ..hw.config import HwConfig

__all__ = ["LayoutError", "packed_shape", "packed_elements", "pack_activation",
           "unpack_activation", "pack_weight", "im2col", "im2col_shape", "ceil_div"]


class LayoutError(ValueError):
    """An array does not have the shape or dtype a layout function expects."""


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` on non-negative integers."""
    return -(-a // b)


def _as_nchw(shape) -> tuple:
    shape = tuple(int(d) for d in shape)
    if len(shape) == 2:
        return shape + (1, 1)
    if len(shape) == 4:
        return shape
    raise LayoutError(f"an activation must be NCHW (4-D) or NC (2-D), not shape {shape}")


def packed_shape(shape, cfg: HwConfig) -> tuple:
    """The 6-D packed shape ``(N/B, C/BI, H, W, B, BI)`` of a logical NCHW/NC shape."""
    n, c, h, w = _as_nchw(shape)
    return (ceil_div(n, cfg.batch), ceil_div(c, cfg.block_in), h, w, cfg.batch, cfg.block_in)


def packed_elements(shape, cfg: HwConfig) -> int:
    """Number of INP/OUT elements a packed activation of logical ``shape`` occupies."""
    nb, cb, h, w, _, _ = packed_shape(shape, cfg)
    return nb * cb * h * w


def pack_activation(x: np.ndarray, cfg: HwConfig) -> np.ndarray:
    """Pack an int8 NCHW (or NC) array into DRAM order, zero-padding channels and batch.

    Returns a contiguous int8 array of shape ``(N/B, C/BI, H, W, B, BI)``.
    """
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise LayoutError(f"pack_activation expects int8 data, not {x.dtype}")
    n, c, h, w = _as_nchw(x.shape)
    x = x.reshape(n, c, h, w)
    nb, cb, _, _, b, bi = packed_shape(x.shape, cfg)
    padded = np.zeros((nb * b, cb * bi, h, w), np.int8)
    padded[:n, :c] = x
    # (NB, B, CB, BI, H, W) -> (NB, CB, H, W, B, BI)
    return np.ascontiguousarray(
        padded.reshape(nb, b, cb, bi, h, w).transpose(0, 2, 4, 5, 1, 3))


def unpack_activation(buf, shape, cfg: HwConfig) -> np.ndarray:
    """Inverse of :func:`pack_activation`: packed bytes/array -> int8 array of ``shape``."""
    shape = tuple(int(d) for d in shape)
    n, c, h, w = _as_nchw(shape)
    pshape = packed_shape(shape, cfg)
    flat = np.frombuffer(bytes(buf), np.int8) if isinstance(buf, (bytes, bytearray, memoryview)) \
        else np.asarray(buf).view(np.int8).reshape(-1)
    need = int(np.prod(pshape))
    if flat.size < need:
        raise LayoutError(f"packed activation of shape {shape} needs {need} bytes, "
                          f"got {flat.size}")
    nb, cb, _, _, b, bi = pshape
    x = flat[:need].reshape(pshape).transpose(0, 4, 1, 5, 2, 3).reshape(nb * b, cb * bi, h, w)
    return np.ascontiguousarray(x[:n, :c]).reshape(shape)


def pack_weight(w: np.ndarray, cfg: HwConfig) -> np.ndarray:
    """Pack int8 OIHW (or OI) weights to ``(O/BO, I/BI, kh, kw, BO, BI)``, zero-padded."""
    w = np.asarray(w)
    if w.dtype != np.int8:
        raise LayoutError(f"pack_weight expects int8 weights, not {w.dtype}")
    if w.ndim == 2:
        w = w[:, :, None, None]
    if w.ndim != 4:
        raise LayoutError(f"weights must be OIHW (4-D) or OI (2-D), not shape {w.shape}")
    o, i, kh, kw = w.shape
    bo, bi = cfg.block_out, cfg.block_in
    ob, ib = ceil_div(o, bo), ceil_div(i, bi)
    padded = np.zeros((ob * bo, ib * bi, kh, kw), np.int8)
    padded[:o, :i] = w
    # (OB, BO, IB, BI, KH, KW) -> (OB, IB, KH, KW, BO, BI)
    return np.ascontiguousarray(
        padded.reshape(ob, bo, ib, bi, kh, kw).transpose(0, 2, 4, 5, 1, 3))


def im2col_shape(shape, kernel, stride=(1, 1), pads=(0, 0, 0, 0), dilation=(1, 1)) -> tuple:
    """Logical NCHW shape of :func:`im2col`'s result: ``(N, C*kh*kw, Ho, Wo)``."""
    n, c, h, w = _as_nchw(shape)
    kh, kw = kernel
    ho = (h + pads[0] + pads[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (w + pads[1] + pads[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    return (n, c * kh * kw, ho, wo)


def im2col(x: np.ndarray, kernel, stride=(1, 1), pads=(0, 0, 0, 0),
           dilation=(1, 1)) -> np.ndarray:
    """Fold a convolution's window into channels: ``out[n, (c*kh + i)*kw + j, oh, ow] =
    xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]`` (pads are ``(top, left, bottom, right)``, zero).

    A 1x1 convolution of the result with ``weight.reshape(O, C*kh*kw, 1, 1)`` equals the
    original convolution (``groups == 1``).
    """
    x = np.asarray(x)
    n, c, ho_, wo_ = im2col_shape(x.shape, kernel, stride, pads, dilation)
    kh, kw = kernel
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    out = np.empty((n, x.shape[1], kh, kw, ho_, wo_), x.dtype)
    for i in range(kh):
        for j in range(kw):
            r, s = i * dilation[0], j * dilation[1]
            out[:, :, i, j] = xp[:, :, r:r + stride[0] * ho_:stride[0],
                                 s:s + stride[1] * wo_:stride[1]]
    return out.reshape(n, c, ho_, wo_)
