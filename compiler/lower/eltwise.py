"""Residual addition (:class:`~pyvta.compiler.qops.QAdd`) on GEMM + ALU.

Both inputs and the output share one packed layout, so the tensor is processed as a flat run
of elements in chunks. Each chunk: LOAD INP ``a`` and ``b``; GEMM reset; GEMM of ``a`` and of
``b`` with diagonal weight blocks. When both multipliers fit int8 the weights are
``mult_a * I`` and ``mult_b * I`` and both GEMMs accumulate into one region (the int8 x int8
products are exact, as the reference's int32 products are). Multipliers in
[-32768, 32639] are split in int8 digits ``m = h * 256 + l``: GEMMs with ``h_a*I`` and
``h_b*I``, ALU shift left by 8, GEMMs with ``l_a*I`` and ``l_b*I`` (all exact). Otherwise the
weights are ``I``, ``a`` and ``b`` land in two regions, and ALU MUL (immediate) and ADD
(tensor) combine them. Multipliers that are multiples of 256 (pow2 scales) use their high
digits only and fold the factor 256 into the final shift (no shift pass between GEMMs).
Then ADD rounding constant, SHR, MAX, MIN, STORE.
"""

from __future__ import annotations

import numpy as np

from ...hw.isa import AluOp, MemType
from ..layout import ceil_div, packed_elements
from ..qops import QAdd
from .emit import Emitter, LoweringError
from .pool import identity_weight
from .requant import IMM_MAX, IMM_MIN, _add_const, bias_block_digits, bias_input_element

__all__ = ["lower_add"]

MAX_ITER = (1 << 14) - 1


def lower_add(em: Emitter, qop: QAdd, shape, a_addr: int, b_addr: int, out_addr: int,
              name: str = "add"):
    """Emit ``qop.reference(a, b)`` over packed tensors of logical ``shape``."""
    cfg = em.cfg
    for m, what in ((qop.mult_a, "mult_a"), (qop.mult_b, "mult_b")):
        if not IMM_MIN <= int(m) <= IMM_MAX:
            raise LoweringError(f"{name}: {what}={m} must be in [{IMM_MIN}, {IMM_MAX}]")
    if not 0 <= qop.shift <= 16:
        raise LoweringError(f"{name}: shift={qop.shift} must be in [0, 16]")
    small = all(-128 <= int(m) <= 127 for m in (qop.mult_a, qop.mult_b))
    digits = None
    if not small:
        # m = hi * 256 + lo with int8 digits: a*ma + b*mb = (a*ha + b*hb) << 8 + a*la + b*lb.
        lo_d = [((int(m) + 128) % 256) - 128 for m in (qop.mult_a, qop.mult_b)]
        hi_d = [(int(m) - lo) // 256 for m, lo in zip((qop.mult_a, qop.mult_b), lo_d)]
        if all(-128 <= h <= 127 for h in hi_d):
            digits = (hi_d, lo_d)
    mults = (int(qop.mult_a), int(qop.mult_b))
    rnd, shr = ((1 << (qop.shift - 1)) if qop.shift else 0), qop.shift
    info = {"small_mult": small, "digits": digits is not None}
    if digits and not any(digits[1]):
        # m = 256*h (pow2 scales): the shift absorbs the factor 256, exactly (|sum| < 2**25):
        # (256*X + 2**(s-1)) >> s == (X + 2**(s-9)) >> (s-8) for s >= 9, X << (8-s) below.
        small, digits, mults = True, None, tuple(hi_d)
        rnd, shr = (1 << (qop.shift - 9)) if qop.shift >= 9 else 0, qop.shift - 8
        info["hi_only"] = True
    regions = 1 if small or digits else 2
    # The rounding constant by one GEMM micro-op per element (bias_input_element against a
    # weight block of its digits, as the convolution's bias): the GEMM lane has room, the ALU
    # lane is the busier one.
    rnd_w = bias_block_digits(cfg, np.full(cfg.block_out, rnd)) if rnd and regions == 1 \
        else None
    info["gemm_round"] = rnd_w is not None
    post = _add_const(rnd) if rnd_w is None else []
    if shr:
        post.append((AluOp.SHR, shr, None))
    total = packed_elements(shape, cfg)
    chunk = min((em.inp_half - (rnd_w is not None)) // 2, em.acc_half // regions, MAX_ITER,
                total)
    if chunk < 1:
        raise LoweringError(f"{name}: the INP/ACC buffers are too small")
    n_chunks = ceil_div(total, chunk)
    chunk = ceil_div(total, n_chunks)  # even chunks
    if small:
        wblob = [identity_weight(cfg, m) for m in mults]
    elif digits:
        wblob = [identity_weight(cfg, d) for d in digits[0] + digits[1]]
    else:
        wblob = [identity_weight(cfg, 1), identity_weight(cfg, 1)]
    if rnd_w is not None:
        k_rnd = len(wblob)
        wblob.append(rnd_w[0])
        e_addr = em.const(MemType.INP, bias_input_element(cfg))
    w_addr = em.const(MemType.WGT, np.stack(wblob))
    post += [(AluOp.MAX, qop.lo, None), (AluOp.MIN, qop.hi, None)]

    start = len(em.insns)
    em.begin_op()
    b = em.b
    for e0 in range(0, total, chunk):
        n = min(chunk, total - e0)
        h_acc = em.tile()
        acc_a = h_acc * em.acc_half
        acc_b = acc_a + (0 if regions == 1 else chunk)
        b.gemm(em.kernel([(acc_a, 0, 0)]), 1, n, dst=(0, 1), reset=True)
        if regions == 2:
            b.gemm(em.kernel([(acc_b, 0, 0)]), 1, n, dst=(0, 1), reset=True)
        em.tile_body()
        hs = em.load_step()
        inp0, wgt0 = hs * em.inp_half, hs * em.wgt_half
        b.load(MemType.INP, inp0, a_addr + e0, 1, n)
        b.load(MemType.INP, inp0 + chunk, b_addr + e0, 1, n)
        b.load(MemType.WGT, wgt0, w_addr, 1, len(wblob))
        if rnd_w is not None and e0 == 0:  # the rounding input element, last of each half
            for hh in (0, 1):
                b.load(MemType.INP, hh * em.inp_half + em.inp_half - 1, e_addr)
        em.end_load_step()
        em.use_step()
        if digits:
            for k, src in ((0, inp0), (1, inp0 + chunk)):
                if digits[0][k]:
                    b.gemm(em.kernel([(acc_a, src, wgt0 + k)]), 1, n, dst=(0, 1), src=(0, 1))
            b.alu(AluOp.SHR, em.kernel([(acc_a, 0, 0)]), 1, n, dst=(0, 1), imm=-8)
            for k, src in ((0, inp0), (1, inp0 + chunk)):
                if digits[1][k]:
                    b.gemm(em.kernel([(acc_a, src, wgt0 + 2 + k)]), 1, n, dst=(0, 1),
                           src=(0, 1))
        else:
            b.gemm(em.kernel([(acc_a, inp0, wgt0)]), 1, n, dst=(0, 1), src=(0, 1))
            b.gemm(em.kernel([(acc_b, inp0 + chunk, wgt0 + 1)]), 1, n, dst=(0, 1),
                   src=(0, 1))
        if rnd_w is not None:
            b.gemm(em.kernel([(acc_a, inp0 + em.inp_half - 1, wgt0 + k_rnd)]), 1, n,
                   dst=(0, 1))
        em.end_use_step()
        em.tile_epilogue()
        # The ALU lane is the busier one (5-7 passes against 2-4 GEMMs per element) and waits
        # for a chunk's stores before the reset two chunks later: the epilogue and stores
        # come in two parts, so only the last quarter's stores are exposed.
        cut = n - n // 4 if n >= 8 else n
        for lo, hi in ((0, cut), (cut, n)) if cut < n else ((0, n),):
            m = hi - lo
            if not small and not digits:
                if qop.mult_a != 1:
                    b.alu(AluOp.MUL, em.kernel([(acc_a + lo, 0, 0)]), 1, m, dst=(0, 1),
                          imm=qop.mult_a)
                if qop.mult_b != 1:
                    b.alu(AluOp.MUL, em.kernel([(acc_b + lo, 0, 0)]), 1, m, dst=(0, 1),
                          imm=qop.mult_b)
                b.alu(AluOp.ADD, em.kernel([(acc_a + lo, acc_b + lo, 0)]), 1, m, dst=(0, 1),
                      src=(0, 1))
            for op, imm, _ in post:
                b.alu(op, em.kernel([(acc_a + lo, 0, 0)]), 1, m, dst=(0, 1), imm=imm)
            if hi < n:
                em.part_stores()
                b.store(acc_a + lo, out_addr + e0 + lo, 1, m)
                em.end_part_stores()
        em.end_tile_compute()
        em.stores()
        b.store(acc_a + (cut if cut < n else 0), out_addr + e0 + (cut if cut < n else 0), 1,
                n - cut if cut < n else n)
        em.end_stores()
    em.end_op(start, name)
    return {"chunk": chunk} | info
