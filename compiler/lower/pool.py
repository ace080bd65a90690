"""Max pooling on the ALU.

Per tile (``th`` output rows x ``tw`` output columns x ``tcb`` channel blocks):

1. LOAD INP the input window with zero padding (``[cb][row][col]``, ``R x Cw`` per block);
2. after one GEMM reset of the frame and the outputs, GEMMs with an identity weight block copy
   the window into an ACC "frame" and each output's first window element into the output;
3. ALU MIN -128 on the frame's padding rectangles and on the outputs whose first element is
   padding, so padding never wins (as -infinity would);
4. ALU MAX with every other window position as a tensor operand (one ALU instruction per
   window position), in two parts by rows, each followed by its STOREs (the values are
   already int8).
"""

from __future__ import annotations

import numpy as np

from ...hw.isa import AluOp, MemType
from ..layout import ceil_div
from ..qops import QMaxPool
from .emit import Emitter, LoweringError

__all__ = ["lower_maxpool", "identity_weight"]


def identity_weight(cfg, scale: int = 1) -> np.ndarray:
    """One WGT element equal to ``scale * I`` (int8)."""
    w = np.zeros((cfg.block_out, cfg.block_in), np.int8)
    np.fill_diagonal(w, scale)
    return w


def _plan(cfg, em, cb_total, ho, wo, kh, kw, sh, sw, rows, cols, name):
    best = None
    for tw in sorted({wo} | {ceil_div(wo, k) for k in range(2, 9)}, reverse=True):
        for th in range(1, ho + 1):
            r, cw = rows(th), cols(tw)
            tcb = min(cb_total, em.inp_half // (r * cw), em.acc_half // (r * cw + th * tw))
            if tcb < 1:
                break
            if r * cw * tcb > 16383:
                continue
            n_tiles = ceil_div(ho, th) * ceil_div(wo, tw) * ceil_div(cb_total, tcb)
            cost = ceil_div(cb_total, tcb) * ceil_div(ho, th) * ceil_div(wo, tw) * \
                (2 * tcb * r * cw + (kh * kw + 1) * tcb * th * tw + 60 * (kh * kw + 8)) \
                + 0 * n_tiles
            if best is None or cost < best[0]:
                best = (cost, th, tw, tcb)
    if best is None:
        raise LoweringError(f"{name}: no tiling of this max pooling fits the INP/ACC buffers")
    return best[1:]


def lower_maxpool(em: Emitter, qop: QMaxPool, in_shape, in_addr: int, out_addr: int,
                  name: str = "maxpool"):
    """Emit a max pooling reading packed ``in_addr`` and writing packed ``out_addr``."""
    cfg = em.cfg
    if len(in_shape) != 4:
        raise LoweringError(f"{name}: max pooling input must be NCHW, not {in_shape}")
    n, c, h, w = in_shape
    kh, kw = qop.kernel
    sh, sw = qop.stride
    pt, pl, pb, pr = qop.pads
    if any(p < 0 or p > 15 for p in qop.pads):
        raise LoweringError(f"{name}: pads {qop.pads} must each be in [0, 15]")
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    nb_total, cb_total = ceil_div(n, cfg.batch), ceil_div(c, cfg.block_in)

    def rows(th):
        return (th - 1) * sh + kh

    def cols(tw):
        return (tw - 1) * sw + kw

    th, tw, tcb = _plan(cfg, em, cb_total, ho, wo, kh, kw, sh, sw, rows, cols, name)
    ident = em.const(MemType.WGT, identity_weight(cfg))
    start = len(em.insns)
    em.begin_op()
    b = em.b
    for nb in range(nb_total):
        for cb_s in range(0, cb_total, tcb):
            tcb_v = min(tcb, cb_total - cb_s)
            for oh0 in range(0, ho, th):
                th_v = min(th, ho - oh0)
                r = rows(th_v)
                ih0 = oh0 * sh - pt
                yp0, yp1 = max(0, -ih0), max(0, ih0 + r - h)
                for ow0 in range(0, wo, tw):
                    tw_v = min(tw, wo - ow0)
                    cw = cols(tw_v)
                    iw0 = ow0 * sw - pl
                    xp0, xp1 = max(0, -iw0), max(0, iw0 + cw - w)
                    if r - yp0 - yp1 < 1 or cw - xp0 - xp1 < 1:
                        raise LoweringError(f"{name}: a window lies entirely in the padding")
                    frame = tcb_v * r * cw
                    p = th_v * tw_v
                    h_acc = em.tile()
                    f0 = h_acc * em.acc_half
                    o0 = f0 + frame
                    # One reset for the frame and the outputs (the GEMMs accumulate).
                    b.gemm(em.kernel([(f0, 0, 0)]), 1, frame + tcb_v * p, dst=(0, 1),
                           reset=True)
                    em.tile_body()
                    hs = em.load_step()
                    inp0, wgt0 = hs * em.inp_half, hs * em.wgt_half
                    for cl in range(tcb_v):
                        b.load(MemType.INP, inp0 + cl * r * cw,
                               in_addr + ((nb * cb_total + cb_s + cl) * h + ih0 + yp0) * w
                               + iw0 + xp0, r - yp0 - yp1, cw - xp0 - xp1, w,
                               (yp0, yp1, xp0, xp1))
                    b.load(MemType.WGT, wgt0, ident, 1, 1)
                    em.end_load_step()
                    em.use_step()
                    b.gemm(em.kernel([(f0, inp0, wgt0)]), 1, frame, dst=(0, 1), src=(0, 1))
                    # The first window element straight into the outputs (GEMM lane): the ALU
                    # lane only does the MAX passes.
                    b.gemm(em.kernel([(o0 + cl * p, inp0 + cl * r * cw, wgt0)
                                      for cl in range(tcb_v)]),
                           th_v, tw_v, dst=(tw_v, 1), src=(sh * cw, sw))
                    em.end_use_step()
                    em.tile_epilogue()
                    # Padding never wins: MIN -128 on the frame's padding rectangles and on the
                    # outputs whose first window element is padding (the copy gave them 0).
                    rects = [(f0, r, cw, (0, yp0, 0, cw)), (f0, r, cw, (r - yp1, yp1, 0, cw)),
                             (f0, r, cw, (yp0, r - yp0 - yp1, 0, xp0)),
                             (f0, r, cw, (yp0, r - yp0 - yp1, cw - xp1, xp1))]
                    a_ = min(th_v, ceil_div(yp0, sh))
                    b_ = min(th_v, max(a_, ceil_div(r - yp1, sh)))
                    c_ = min(tw_v, ceil_div(xp0, sw))
                    d_ = min(tw_v, max(c_, ceil_div(cw - xp1, sw)))
                    rects += [(o0, th_v, tw_v, (0, a_, 0, tw_v)),
                              (o0, th_v, tw_v, (b_, th_v - b_, 0, tw_v)),
                              (o0, th_v, tw_v, (a_, b_ - a_, 0, c_)),
                              (o0, th_v, tw_v, (a_, b_ - a_, d_, tw_v - d_))]
                    for base, rows_, cols_, (y0, ny, x0, nx) in rects:
                        if ny > 0 and nx > 0:
                            uops = [(base + cl * rows_ * cols_ + y0 * cols_ + x0, 0, 0)
                                    for cl in range(tcb_v)]
                            b.alu(AluOp.MIN, em.kernel(uops), ny, nx, dst=(cols_, 1),
                                  imm=-128)
                    # Epilogue and stores in two parts (by rows): the ALU lane, the busier
                    # one, then waits only for the last part's stores before the reset two
                    # tiles later.
                    cut = th_v - max(1, th_v // 4) if th_v >= 2 and kh * kw > 1 else th_v
                    parts = [(0, cut), (cut, th_v)] if cut < th_v else [(0, th_v)]
                    for k, (r_lo, r_hi) in enumerate(parts):
                        for i in range(kh):
                            for j in range(kw):
                                if i == j == 0:
                                    continue
                                uops = [(o0 + cl * p + r_lo * tw_v,
                                         f0 + cl * r * cw + (r_lo * sh + i) * cw + j, 0)
                                        for cl in range(tcb_v)]
                                b.alu(AluOp.MAX, em.kernel(uops), r_hi - r_lo, tw_v,
                                      dst=(tw_v, 1), src=(sh * cw, sw))
                        last = k == len(parts) - 1
                        if last:
                            em.end_tile_compute()
                            em.stores()
                        else:
                            em.part_stores()
                        for cl in range(tcb_v):
                            b.store(o0 + cl * p + r_lo * tw_v,
                                    out_addr + ((nb * cb_total + cb_s + cl) * ho + oh0 + r_lo)
                                    * wo + ow0, r_hi - r_lo, tw_v, wo)
                        if not last:
                            em.end_part_stores()
                    em.end_stores()
    em.end_op(start, name)
    return {"th": th, "tw": tw, "tcb": tcb}
