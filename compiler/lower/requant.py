"""Requantization on the ALU: :func:`pyvta.compiler.qops.requantize` as a list of ALU passes.

Each pass is ``(AluOp, imm, vector)``: either an immediate (the same value for every channel,
fitting the ALU's signed 16-bit immediate) or a per-channel int32 vector that the lowering loads
into the accumulator buffer and uses as the ALU's tensor operand.

When ``pre_shift == 0`` the bias and the rounding constant fold into one per-channel addend:
``(acc + bias) * m + r == acc * m + (bias * m + r)`` holds exactly in int32 wrap-around
arithmetic (it is ring arithmetic modulo 2**32), which saves one ALU pass per element.
"""

from __future__ import annotations

import numpy as np

from ...hw.isa import AluOp
from ..qops import Requant, wrap32

__all__ = ["requant_passes", "IMM_MIN", "IMM_MAX"]

IMM_MIN, IMM_MAX = -(1 << 15), (1 << 15) - 1


def _operand(op: AluOp, values: np.ndarray):
    """``(op, imm, None)`` when every channel shares one value that fits the immediate."""
    values = wrap32(values)
    if np.all(values == values[0]) and IMM_MIN <= int(values[0]) <= IMM_MAX:
        return (op, int(values[0]), None)
    return (op, None, values.astype(np.int32))


def _add_const(value: int) -> list:
    """ADD of a scalar that may not fit 16 bits (the rounding constant 1 << 15)."""
    passes = []
    value = int(wrap32(np.array(value)))
    while value:
        step = max(IMM_MIN, min(IMM_MAX, value))
        passes.append((AluOp.ADD, step, None))
        value -= step
    return passes


def requant_passes(rq: Requant, bias, channels: int) -> list:
    """ALU passes computing ``requantize(acc + bias, rq)`` for ``channels`` output channels."""
    mult = np.broadcast_to(np.asarray(rq.mult, np.int64).reshape(-1), (channels,)) \
        if np.asarray(rq.mult).size == 1 else np.asarray(rq.mult, np.int64).reshape(-1)
    if mult.size != channels:
        raise ValueError(f"requant multiplier has {mult.size} entries for {channels} channels")
    bias = np.zeros(channels, np.int64) if bias is None else \
        np.asarray(bias, np.int64).reshape(-1)
    if bias.size != channels:
        raise ValueError(f"bias has {bias.size} entries for {channels} channels")
    rnd = (1 << (rq.shift - 1)) if rq.shift else 0
    passes = []
    if rq.pre_shift == 0:
        if np.any(mult != 1):
            passes.append(_operand(AluOp.MUL, mult))
        addend = wrap32(bias * mult + rnd)
        if np.any(addend != 0):
            op = _operand(AluOp.ADD, addend)
            passes += _add_const(op[1]) if op[2] is None else [op]
    else:
        if np.any(bias != 0):
            op = _operand(AluOp.ADD, bias)
            passes += _add_const(op[1]) if op[2] is None else [op]
        passes.append((AluOp.SHR, rq.pre_shift, None))
        if np.any(mult != 1):
            passes.append(_operand(AluOp.MUL, mult))
        passes += _add_const(rnd)
    if rq.shift:
        passes.append((AluOp.SHR, rq.shift, None))
    passes.append((AluOp.MAX, rq.lo, None))
    passes.append((AluOp.MIN, rq.hi, None))
    return passes


def reinit_passes(rq: Requant, bias, channels: int, acc_bound: int):
    """Passes for a tile whose accumulators still hold this operator's clipped outputs
    (values in ``[rq.lo, rq.hi]``) instead of zeros; None when they do not apply.

    With ``pre_shift = p > 0`` the plain sequence is GEMM reset, ADD bias, SHR p, ... . Here the
    first pass is ``MIN(acc, bias - D)`` with ``D`` a multiple of ``2**p`` large enough that
    ``bias - D <= lo``: it *sets* the accumulators to ``bias - D`` (no reset needed). After the
    GEMMs, ``(t - D) >> p == (t >> p) - D / 2**p`` exactly (``t = conv + bias`` provably never
    wraps: ``|t| + D < 2**31`` by ``acc_bound``), and ``D / 2**p * m`` is added back together
    with the rounding constant (int32 ring arithmetic). One ALU pass fewer per element.
    Returns ``(first_pass, later_passes)``.
    """
    p = rq.pre_shift
    if p == 0:
        return None
    mult = np.broadcast_to(np.asarray(rq.mult, np.int64).reshape(-1), (channels,)) \
        if np.asarray(rq.mult).size == 1 else np.asarray(rq.mult, np.int64).reshape(-1)
    b = np.zeros(channels, np.int64) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    d = max(0, -(-(int(b.max()) - rq.lo) // (1 << p))) * (1 << p)
    if acc_bound + int(np.abs(b).max()) + d >= 1 << 31:
        return None
    first = _operand(AluOp.MIN, b - d)
    rnd = (1 << (rq.shift - 1)) if rq.shift else 0
    later = [(AluOp.SHR, p, None)]
    if np.any(mult != 1):
        later.append(_operand(AluOp.MUL, mult))
    addend = wrap32((d >> p) * mult + rnd)
    if np.any(addend != 0):
        op = _operand(AluOp.ADD, addend)
        later += _add_const(op[1]) if op[2] is None else [op]
    if rq.shift:
        later.append((AluOp.SHR, rq.shift, None))
    later += [(AluOp.MAX, rq.lo, None), (AluOp.MIN, rq.hi, None)]
    return first, later


def bias_input_element(cfg) -> np.ndarray:
    """The INP element ``e`` that turns a GEMM micro-op into a bias add: lane 0 is 1, the
    other lanes 127 (every batch row)."""
    e = np.full((cfg.batch, cfg.block_in), 127, np.int8)
    e[:, 0] = 1
    return e


def bias_block_digits(cfg, bias):
    """WGT blocks ``W`` (one per output block) with ``e . W[o] == bias[o]`` for the element of
    :func:`bias_input_element`: ``W[o][0] = bias - 127*q``, the other lanes split ``q``.
    None when some bias is too large for one micro-op (``|bias| > 127*127*(BLOCK_IN-1)``)."""
    if bias is None:
        return None
    b = np.asarray(bias, np.int64).reshape(-1)
    lanes = cfg.block_in - 1
    if lanes < 1 or not b.any():
        return None
    q = np.round(b / 127).astype(np.int64)
    r = b - 127 * q
    if np.any(np.abs(q) > 127 * lanes) or np.any(np.abs(r) > 127):
        return None
    base, rem = np.divmod(q, lanes)           # q = base*lanes + rem, 0 <= rem < lanes
    digits = np.repeat(base[:, None], lanes, axis=1) + (np.arange(lanes)[None, :] < rem[:, None])
    if np.any(digits < -128) or np.any(digits > 127):
        return None
    ob = -(-b.size // cfg.block_out)
    w = np.zeros((ob * cfg.block_out, cfg.block_in), np.int8)
    w[:b.size, 0] = r
    w[:b.size, 1:] = digits
    assert np.array_equal(w[:b.size, 0].astype(np.int64) + 127 * w[:b.size, 1:].astype(
        np.int64).sum(1), b)
    return w.reshape(ob, cfg.block_out, cfg.block_in)
