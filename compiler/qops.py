"""Quantized operators: the integer contract between quantizer, reference and accelerator.

Every accelerator operator is defined here by an exact numpy reference on int8/int32 data.
The quantizer produces these parameters; the lowering (``compiler/lower/``) must reproduce the
references bit for bit on the accelerator; the reference executor uses them to check it.

Quantization is symmetric (zero point 0): a real value ``r`` is ``q * scale``.

Requantization (``Requant``) turns an int32 accumulator of output channel ``c`` into int8,
using only what the VTA ALU does (int32 wrap-around, arithmetic shifts)::

    y = acc                                   # conv/dense result + bias, int32
    y = y >> pre_shift                        # arithmetic shift, no rounding (0 <= pre <= 31)
    y = wrap32(y * mult[c])                   # per-channel (or scalar) multiplier
    y = wrap32(y + (1 << (shift - 1))) >> shift   if shift > 0   (round half up; shift <= 16)
    y = min(max(y, lo), hi)                   # activation clip within [-128, 127]
    out = int8(y)

The quantizer chooses ``pre_shift``, ``mult`` and ``shift`` so nothing overflows for the
calibrated ranges; wrap-around is still modelled exactly so that the references equal the
hardware even where it would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Requant", "wrap32", "requantize", "QConv2d", "QDense", "QAdd", "QMaxPool",
           "QAvgPool", "conv2d_int32"]


def wrap32(x) -> np.ndarray:
    """Wrap an integer array to int32 (two's complement), as the hardware does."""
    return np.asarray(x, np.int64).astype(np.int32)


@dataclass
class Requant:
    """int32 -> int8 requantization parameters (see the module docstring)."""
    mult: np.ndarray          #: int32 per output channel (shape (C,)) or a scalar array
    shift: int = 0            #: final rounding right shift, 0..16
    pre_shift: int = 0        #: right shift before the multiply, 0..31
    lo: int = -128            #: clip low (e.g. 0 for ReLU)
    hi: int = 127             #: clip high

    def __post_init__(self):
        self.mult = np.asarray(self.mult, np.int32)
        if not 0 <= self.shift <= 16:
            raise ValueError(f"Requant.shift must be in [0, 16], not {self.shift}")
        if not 0 <= self.pre_shift <= 31:
            raise ValueError(f"Requant.pre_shift must be in [0, 31], not {self.pre_shift}")
        if not -128 <= self.lo <= self.hi <= 127:
            raise ValueError(f"Requant clip range [{self.lo}, {self.hi}] must lie in [-128, 127]")


def requantize(acc: np.ndarray, rq: Requant, channel_axis: int = 1) -> np.ndarray:
    """Apply :class:`Requant` to an int32 array whose channels lie along ``channel_axis``."""
    y = np.asarray(acc, np.int32).astype(np.int64)
    y = y >> rq.pre_shift
    mult = rq.mult.astype(np.int64)
    if mult.ndim == 1 and mult.size > 1:
        shape = [1] * y.ndim
        shape[channel_axis] = mult.size
        mult = mult.reshape(shape)
    y = wrap32(wrap32(y) * mult).astype(np.int64)
    if rq.shift:
        y = wrap32(y + (1 << (rq.shift - 1))).astype(np.int64) >> rq.shift
    return np.clip(y, rq.lo, rq.hi).astype(np.int8)


def conv2d_int32(x: np.ndarray, w: np.ndarray, stride=(1, 1), pads=(0, 0, 0, 0),
                 dilation=(1, 1), groups: int = 1) -> np.ndarray:
    """Exact int8 x int8 -> int32 2-D convolution, NCHW / OIHW; pads = (top, left, bottom, right)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if c != cg * groups or o % groups:
        raise ValueError(f"conv2d: {c} input channels, weight {w.shape}, groups {groups} disagree")
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    sh, sw = stride
    dh, dw = dilation
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, ho, wo), np.int64)
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og].astype(np.int64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * ho:sh, j * dw:j * dw + sw * wo:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return wrap32(out)


@dataclass
class QConv2d:
    """Quantized 2-D convolution: int8 NCHW in, int8 NCHW out."""
    weight: np.ndarray                       #: int8 (O, C/groups, kh, kw)
    bias: np.ndarray                         #: int32 (O,), in accumulator scale
    requant: Requant
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)               #: (top, left, bottom, right)
    dilation: tuple = (1, 1)
    groups: int = 1

    def reference(self, x: np.ndarray) -> np.ndarray:
        acc = conv2d_int32(x, self.weight, self.stride, self.pads, self.dilation, self.groups)
        acc = wrap32(acc.astype(np.int64) + self.bias.astype(np.int64)[None, :, None, None])
        return requantize(acc, self.requant, 1)


@dataclass
class QDense:
    """Quantized fully-connected layer: int8 (N, K) in, int8 (N, O) out."""
    weight: np.ndarray                       #: int8 (O, K)
    bias: np.ndarray                         #: int32 (O,)
    requant: Requant

    def reference(self, x: np.ndarray) -> np.ndarray:
        acc = x.astype(np.int64) @ self.weight.astype(np.int64).T + self.bias.astype(np.int64)
        return requantize(wrap32(acc), self.requant, 1)


@dataclass
class QAdd:
    """Quantized element-wise add of two int8 tensors of one shape (e.g. a residual).

    ``y = clip(wrap32(a * mult_a + b * mult_b + round) >> shift, lo, hi)``, with
    ``round = 1 << (shift - 1)`` when ``shift > 0``. Multipliers are scalars in [-2**15, 2**15).
    """
    mult_a: int
    mult_b: int
    shift: int = 0
    lo: int = -128
    hi: int = 127

    def reference(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        y = wrap32(wrap32(a.astype(np.int64) * self.mult_a).astype(np.int64)
                   + wrap32(b.astype(np.int64) * self.mult_b))
        if self.shift:
            y = wrap32(y.astype(np.int64) + (1 << (self.shift - 1))).astype(np.int64) >> self.shift
        return np.clip(y, self.lo, self.hi).astype(np.int8)


@dataclass
class QMaxPool:
    """Max pooling on int8 NCHW; padding never wins (it acts as -infinity)."""
    kernel: tuple = (2, 2)
    stride: tuple = (2, 2)
    pads: tuple = (0, 0, 0, 0)               #: (top, left, bottom, right)

    def reference(self, x: np.ndarray) -> np.ndarray:
        kh, kw = self.kernel
        sh, sw = self.stride
        xp = np.pad(x, ((0, 0), (0, 0), (self.pads[0], self.pads[2]),
                        (self.pads[1], self.pads[3])), constant_values=-128)
        ho = (xp.shape[2] - kh) // sh + 1
        wo = (xp.shape[3] - kw) // sw + 1
        out = np.full(x.shape[:2] + (ho, wo), -128, np.int8)
        for i in range(kh):
            for j in range(kw):
                out = np.maximum(out, xp[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw])
        return out


@dataclass
class QAvgPool:
    """Average pooling on int8 NCHW as ``requantize(sum of the window)``; ``kernel=None`` is global.

    The divisor is folded into ``requant`` (scalar ``mult``/``shift``); padded cells count as 0.
    """
    requant: Requant
    kernel: tuple | None = None
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)

    def reference(self, x: np.ndarray) -> np.ndarray:
        if self.kernel is None:
            acc = x.astype(np.int64).sum(axis=(2, 3), keepdims=True)
        else:
            kh, kw = self.kernel
            sh, sw = self.stride
            xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (self.pads[0], self.pads[2]),
                                             (self.pads[1], self.pads[3])))
            ho = (xp.shape[2] - kh) // sh + 1
            wo = (xp.shape[3] - kw) // sw + 1
            acc = np.zeros(x.shape[:2] + (ho, wo), np.int64)
            for i in range(kh):
                for j in range(kw):
                    acc += xp[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw]
        return requantize(wrap32(acc), self.requant, 1)
