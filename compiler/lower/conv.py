"""Lowering of a quantized convolution (and of everything expressed as one: dense layers,
average pooling) to GEMM + ALU instructions, tiled for the configuration's buffers.

Data on chip, per virtual-thread half (see ``emit.py``):

* INP: ``[cb][row][col]`` -- the input window of the tile for ``cb`` channel blocks, zero
  padding written by the LOAD's pad fields (``R x Cw`` elements per block);
* WGT: ``[ob][cb][i][j]`` -- the tile's weight blocks;
* ACC: ``[ob][oh][ow]`` accumulators of the output tile, then one vector per per-channel ALU
  operand (``[param][ob]``).

A tile is ``th`` output rows x ``tw`` output columns x ``tob`` output-channel blocks; its
reduction runs in steps of ``tcb`` input-channel blocks, each step one load step (INP + WGT
loads) and one GEMM instruction. After the last step the ALU requantizes the tile and it is
stored. Grouped and depthwise convolutions keep, for every output block, only the input blocks
its groups read (depthwise: one block, a diagonal weight block).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...hw.isa import MemType
from ..layout import ceil_div, pack_weight
from ..qops import QConv2d
from .emit import Emitter, LoweringError
from .requant import bias_block_digits, bias_input_element, reinit_passes, requant_passes

__all__ = ["ConvGeom", "ConvPlan", "plan_conv", "lower_conv", "gemm_kernel"]

MAX_PAD = 15  # LOAD pad fields are 4 bits
#: Tilings tried on the two-lane model when the ALU lane is about as busy as the GEMM lane.
LANE_TRIALS = 6


@dataclass
class ConvGeom:
    """Shapes of one convolution, in elements and blocks."""
    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    pb: int
    pr: int
    dh: int
    dw: int
    groups: int
    ho: int
    wo: int

    @classmethod
    def of(cls, qop: QConv2d, in_shape) -> "ConvGeom":
        n, c, h, w = in_shape
        o, cg, kh, kw = qop.weight.shape
        sh, sw = qop.stride
        pt, pl, pb, pr = qop.pads
        dh, dw = qop.dilation
        ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
        wo = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
        return cls(n, c, h, w, o, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, qop.groups, ho, wo)

    def rows(self, th, kh=None):
        kh = self.kh if kh is None else kh
        return (th - 1) * self.sh + (kh - 1) * self.dh + 1

    def cols(self, tw):
        return (tw - 1) * self.sw + (self.kw - 1) * self.dw + 1


def block_ranges(g: ConvGeom, cfg) -> tuple[list, list]:
    """For each output-channel block: first input-channel block and number of blocks it reads."""
    bi, bo = cfg.block_in, cfg.block_out
    cg, og = g.c // g.groups, g.o // g.groups
    cb0, ncb = [], []
    for ob in range(ceil_div(g.o, bo)):
        o_lo, o_hi = ob * bo, min(g.o, (ob + 1) * bo) - 1
        c_lo, c_hi = (o_lo // og) * cg, (o_hi // og + 1) * cg
        cb0.append(c_lo // bi)
        ncb.append(ceil_div(c_hi, bi) - c_lo // bi)
    return cb0, ncb


def _ob_tiles(cb0, ncb, tob):
    """Split output blocks into tiles of ``tob``; None unless every tile reads an affine set of
    input blocks (same count, constant offset ``delta`` between consecutive output blocks)."""
    tiles = []
    for s in range(0, len(cb0), tob):
        e = min(s + tob, len(cb0))
        if len(set(ncb[s:e])) != 1:
            return None
        deltas = {cb0[i + 1] - cb0[i] for i in range(s, e - 1)}
        if len(deltas) > 1 or (deltas and min(deltas) < 0):
            return None
        tiles.append((s, e, deltas.pop() if deltas else 0))
    return tiles


def _mode(tob, th, tw):
    """Micro-op order keeping consecutive micro-ops on different accumulators (VTA's rule)."""
    if tw >= 3:
        return "A"
    if th * tw >= 3:
        return "B"
    return "C"


def gemm_kernel(g: ConvGeom, tcb, tob, th, tw, delta, dst0, src0, wgt0, tkh=None,
                scratch=None, shared=False, rowskip=False):
    """Micro-ops and GEMM loop of one tile variant; returns ``(uops, loop_kwargs)``.

    Micro-op order is reduction-major with output columns innermost (mode A), output positions
    innermost (B) or output blocks, rows, columns innermost (C), whichever keeps the destination
    of a micro-op different from the previous two.
    """
    tkh = g.kh if tkh is None else tkh
    kk = tkh * g.kw
    r, cw = g.rows(th, tkh), g.cols(tw)
    row = g.sh * cw  # distance in INP between the windows of consecutive output rows
    if rowskip:  # one kernel row, strided: only the rows used were loaded
        r, row = th, cw
    p = th * tw
    src_ob = delta * r * cw
    if shared:  # one weight block per input block, the same for every kernel position
        kk = 1
    reds = [(cb if shared else (cb * tkh + i) * g.kw + j,
             cb * r * cw + i * g.dh * cw + j * g.dw)
            for cb in range(tcb) for i in range(tkh) for j in range(g.kw)]
    mode = _mode(tob, th, tw)
    if mode == "A":
        uops = [(dst0 + ow, src0 + s + ow * g.sw, wgt0 + red)
                for red, s in reds for ow in range(tw)]
        loop = dict(iter_out=tob, iter_in=th, dst=(p, tw), src=(src_ob, row),
                    wgt=(tcb * kk, 0))
    elif mode == "B":
        uops = [(dst0 + oh * tw + ow, src0 + s + oh * row + ow * g.sw, wgt0 + red)
                for red, s in reds for oh in range(th) for ow in range(tw)]
        loop = dict(iter_out=tob, iter_in=1, dst=(p, 0), src=(src_ob, 0), wgt=(tcb * kk, 0))
    else:
        # Fewer than 3 outputs per reduction step: pad each step with micro-ops writing
        # scratch accumulators (``scratch``, never stored) so the rule still holds.
        dummies = [(scratch + k, src0, wgt0) for k in range(max(0, 3 - tob * p))]
        uops = []
        for red, s in reds:
            uops += [(dst0 + ob * p + oh * tw + ow,
                      src0 + ob * src_ob + s + oh * row + ow * g.sw,
                      wgt0 + ob * tcb * kk + red)
                     for ob in range(tob) for oh in range(th) for ow in range(tw)]
            uops += dummies
        loop = dict(iter_out=1, iter_in=1, dst=(0, 0), src=(0, 0), wgt=(0, 0))
    return uops, loop


@dataclass
class ConvPlan:
    """A tiling: ``th`` x ``tw`` outputs, ``tob`` output blocks, ``tcb`` input blocks per step
    (and ``tkh`` kernel rows per step, fewer than the kernel's only when one block's window
    does not fit the INP buffer; then ``tcb == 1``)."""
    th: int
    tw: int
    tob: int
    tcb: int
    cost: float = 0.0
    tkh: int = 0

    def to_dict(self):
        return {"th": self.th, "tw": self.tw, "tob": self.tob, "tcb": self.tcb,
                "tkh": self.tkh, "cost": self.cost}


def _kernel_size(g, tcb, tob, th, tw, tkh):
    mode = _mode(tob, th, tw)
    n = tcb * tkh * g.kw * tw
    if mode in "BC":
        n *= th
    if mode == "C":
        n = tcb * tkh * g.kw * max(3, tob * th * tw)
    return n


def _variants(total, tile):
    return {tile} | ({total % tile} if total % tile else set())


def plan_conv(cfg, g: ConvGeom, cb0, ncb, n_params: int, n_alu: int, name="conv",
              acc_half: int | None = None, gemm_bias: bool = False, keep: int = 1,
              short_steps: bool = False):
    """Choose the tiling with the lowest analytical cost (``compiler/cost.py``) that fits
    (with ``keep > 1``: up to ``keep`` cheapest with distinct ``(tob, tcb, tkh)``).
    ``short_steps`` also tries reduction steps of half the size that fits (shorter GEMM
    instructions: for convolutions whose ALU lane is about as busy as the GEMM lane).

    ``n_params`` per-channel vectors are loaded with every tile, unless ``acc_half`` is given:
    then they stay resident above the two ACC halves of that size for the whole operator.
    """
    from ..cost import conv_tile_cost
    # A GEMM-added bias reserves one INP element and ``tob`` WGT elements per half.
    em_half = dict(inp=cfg.inp_depth // 2 - gemm_bias, wgt=cfg.wgt_depth // 2,
                   acc=acc_half or cfg.acc_depth // 2)
    if acc_half:
        n_params = 0
    kk = g.kh * g.kw
    ob_total = len(cb0)
    best, cands = None, []
    tob_cands = [t for t in range(1, ob_total + 1) if _ob_tiles(cb0, ncb, t) is not None]
    ncb_max = max(ncb)
    for tob in tob_cands:
        tiles = _ob_tiles(cb0, ncb, tob)
        delta = max(d for _, _, d in tiles)
        for tw in sorted({g.wo} | {ceil_div(g.wo, k) for k in range(2, 9)}, reverse=True):
            for th in range(1, g.ho + 1):
                if th > 1 and ceil_div(g.ho, th) == ceil_div(g.ho, th - 1):
                    continue  # same number of row tiles as a smaller, cheaper-to-fit th
                if tob * (th * tw + n_params) > em_half["acc"]:
                    break
                r, cw = g.rows(th), g.cols(tw)
                # The largest reduction step that fits INP and WGT; balanced so steps are even.
                wgt_room = em_half["wgt"] - (tob if gemm_bias else 0)
                tcb_fit = min(ncb_max, wgt_room // (tob * kk),
                              em_half["inp"] // (r * cw) - (tob - 1) * delta)
                if tcb_fit >= 1:
                    # Also half-size steps: shorter GEMM instructions interleave better with
                    # the other slot's epilogue when the ALU lane is the busier one.
                    halves = {ceil_div(tcb_fit, 2)} if short_steps else set()
                    steps = sorted({(ceil_div(ncb_max, ceil_div(ncb_max, t)), g.kh)
                                    for t in {tcb_fit} | halves}, reverse=True)
                else:
                    # One block's window is too big: split the kernel rows instead.
                    steps = [(1, k) for k in range(g.kh - 1, 0, -1)
                             if tob * k * g.kw <= wgt_room and
                             g.rows(th, k) * cw * (1 + (tob - 1) * delta) <= em_half["inp"]]
                    if not steps:
                        break
                for tcb, tkh in steps:
                    nsteps = ceil_div(ncb_max, tcb) * ceil_div(g.kh, tkh)
                    par = 2 if nsteps == 1 else 4  # buffer-half combinations of kernels
                    uops = 0
                    for tcb_v in _variants(ncb_max, tcb) | {min(n, tcb) for n in set(ncb)}:
                        for tob_v in _variants(ob_total, tob):
                            for th_v in _variants(g.ho, th):
                                for tw_v in _variants(g.wo, tw):
                                    for tkh_v in _variants(g.kh, tkh):
                                        uops += _kernel_size(g, tcb_v, tob_v, th_v, tw_v,
                                                             tkh_v)
                    if uops * par + 8 > cfg.uop_depth:
                        continue
                    cost = conv_tile_cost(cfg, g, ncb, th, tw, tob, tcb, delta, n_params,
                                          n_alu, tkh)
                    cands.append(ConvPlan(th, tw, tob, tcb, cost, tkh))
                    if best is None or cost < best.cost:
                        best = cands[-1]
    if best is None:
        raise LoweringError(
            f"{name}: no tiling of this convolution ({g.c}->{g.o} channels, {g.h}x{g.w} input, "
            f"{g.kh}x{g.kw} kernel) fits the buffers of configuration {cfg.fingerprint} "
            f"(INP {cfg.inp_depth}, WGT {cfg.wgt_depth}, ACC {cfg.acc_depth}, "
            f"UOP {cfg.uop_depth} elements)")
    if keep > 1:  # the cheapest of each (tob, tcb, tkh): shapes that overlap differently
        firsts = {}
        for c in sorted(cands, key=lambda c: c.cost):
            firsts.setdefault((c.tob, c.tcb, c.tkh), c)
        return list(firsts.values())[:keep]
    return best


def _best_by_lanes(em: Emitter, qop, in_shape, in_addr, out_addr, name, cands) -> ConvPlan:
    """The candidate tiling whose program is fastest on ``compiler/cost``'s two-lane model
    (each lowered alone into a scratch emitter). Used where the ALU and GEMM lanes are close to
    balanced, so the closed-form tile cost cannot see which tile shapes overlap best."""
    from ..cost import simulate
    from .banks import bank_sets
    best, best_t = cands[0], None
    for c in cands:
        trial = Emitter(em.cfg)
        try:
            lower_conv(trial, qop, in_shape, in_addr, out_addr, name, plan=c)
        except LoweringError:  # e.g. a tile whose window lies in the padding
            continue
        t = simulate(em.cfg, trial.insns,
                     banks=bank_sets(em.cfg, trial.insns, trial.region.segments)).total
        if best_t is None or t < best_t:
            best, best_t = c, t
    return best


def _expand_groups(weight: np.ndarray, groups: int, c: int) -> np.ndarray:
    """Dense OIHW weights with zeros outside each output channel's group."""
    if groups == 1:
        return weight
    o, cg, kh, kw = weight.shape
    og = o // groups
    dense = np.zeros((o, c, kh, kw), np.int8)
    for gi in range(groups):
        dense[gi * og:(gi + 1) * og, gi * cg:(gi + 1) * cg] = weight[gi * og:(gi + 1) * og]
    return dense


def _param_vectors(cfg, vec: np.ndarray) -> np.ndarray:
    """A per-channel int32 vector as ACC elements ``(O/BO, BATCH, BO)`` (batch-replicated)."""
    ob = ceil_div(vec.size, cfg.block_out)
    v = np.zeros(ob * cfg.block_out, np.int32)
    v[:vec.size] = vec
    return np.ascontiguousarray(
        np.broadcast_to(v.reshape(ob, 1, cfg.block_out), (ob, cfg.batch, cfg.block_out)))


def _lane_cycles(cfg, qop: QConv2d, g: ConvGeom, gemm_bias: bool) -> int:
    """ALU-lane cycles per output element of a tile: reset or re-initialisation and the
    requantization passes (with the bias unless ``gemm_bias``)."""
    from ..cost import alu_tensor_cycles
    tensor = alu_tensor_cycles(cfg)

    def cycles(ps):
        return sum(tensor if v is not None else 1 for _, _, v in ps)
    bias = None if gemm_bias else qop.bias
    alu = 1 + cycles(requant_passes(qop.requant, bias, g.o))
    if not gemm_bias:
        reinit = reinit_passes(qop.requant, qop.bias, g.o,
                               (g.c // g.groups) * g.kh * g.kw * 128 * 128)
        if reinit is not None:
            alu = min(alu, cycles([reinit[0]] + reinit[1]))
    return alu


def _alu_bias_is_free(cfg, qop: QConv2d, g: ConvGeom, gemm_per_output: int) -> bool:
    """Whether the bias should be added by the ALU although a GEMM micro-op could add it.

    With two compute lanes a tile's ALU passes run while the other tile's GEMMs do: per
    output, a GEMM bias costs the GEMM lane one cycle, an ALU bias costs the ALU lane a
    tensor pass; keep whichever leaves the busier lane less busy (ties: the ALU)."""
    store = cfg.out_elem_bytes / cfg.axi_bytes / 2  # exposed stores (split, see _epilogue_parts)
    with_gemm = max(gemm_per_output + 1, _lane_cycles(cfg, qop, g, True) + store)
    with_alu = max(gemm_per_output, _lane_cycles(cfg, qop, g, False) + store)
    return with_alu <= with_gemm


def _epilogue_parts(tob, th, split: bool) -> list:
    """Parts ``(ob_lo, ob_hi, row_lo, row_hi)`` of a tile whose epilogue passes and stores are
    emitted one after the other. With ``split`` the last part is as close to a quarter of the
    tile as its output blocks or rows allow (:func:`pyvta.compiler.cost.last_part`): the
    stores of the first part then run during the ALU passes of the last, so the ALU lane waits
    only for the last part's stores before re-using the bank two tiles later."""
    from ..cost import last_part
    how, k = last_part(tob, th)
    if not split or how is None:
        return [(0, tob, 0, th)]
    if how == "ob":
        return [(0, tob - k, 0, th), (tob - k, tob, 0, th)]
    return [(0, tob, 0, th - k), (0, tob, th - k, th)]


def check_conv(qop: QConv2d, in_shape, name: str):
    """Validate a convolution's attributes against what the hardware can do."""
    if len(in_shape) != 4:
        raise LoweringError(f"{name}: convolution input must be NCHW, not shape {in_shape}")
    w = np.asarray(qop.weight)
    if w.dtype != np.int8 or w.ndim != 4:
        raise LoweringError(f"{name}: weight must be int8 OIHW, not {w.dtype} {w.shape}")
    if qop.groups < 1 or in_shape[1] % qop.groups or w.shape[0] % qop.groups \
            or w.shape[1] * qop.groups != in_shape[1]:
        raise LoweringError(f"{name}: weight {w.shape} with groups={qop.groups} does not match "
                            f"{in_shape[1]} input channels")
    if any(p < 0 or p > MAX_PAD for p in qop.pads):
        raise LoweringError(f"{name}: pads {tuple(qop.pads)} must each be in [0, {MAX_PAD}] "
                            f"(LOAD pad fields are 4 bits)")
    if any(s < 1 for s in qop.stride) or any(d < 1 for d in qop.dilation):
        raise LoweringError(f"{name}: stride {qop.stride} and dilation {qop.dilation} must be >= 1")


def lower_conv(em: Emitter, qop: QConv2d, in_shape, in_addr: int, out_addr: int,
               name: str = "conv", plan: ConvPlan | None = None) -> ConvPlan:
    """Emit one convolution reading packed ``in_addr`` and writing packed ``out_addr``
    (INP/OUT element addresses)."""
    cfg = em.cfg
    check_conv(qop, in_shape, name)
    g = ConvGeom.of(qop, in_shape)
    if g.ho < 1 or g.wo < 1:
        raise LoweringError(f"{name}: output would be {g.ho}x{g.wo}")
    kk = g.kh * g.kw
    nb_total = ceil_div(g.n, cfg.batch)
    cb_total = ceil_div(g.c, cfg.block_in)
    ob_total = ceil_div(g.o, cfg.block_out)
    cb0, ncb = block_ranges(g, cfg)

    # Weights: per output block, only the input blocks it reads.
    packed = pack_weight(_expand_groups(np.asarray(qop.weight), qop.groups, g.c), cfg)
    rows = [packed[ob, cb0[ob]:cb0[ob] + ncb[ob]].reshape(-1, cfg.block_out, cfg.block_in)
            for ob in range(ob_total)]
    # Average pooling (ones) and the like: every kernel position has the same weight block.
    shared = kk > 1 and all(
        (r.reshape(n, kk, -1) == r.reshape(n, kk, -1)[:, :1]).all() for r, n in zip(rows, ncb))
    if shared:
        rows = [r.reshape(n, kk, cfg.block_out, cfg.block_in)[:, 0] for r, n in zip(rows, ncb)]
    woff = np.concatenate([[0], np.cumsum([r.shape[0] for r in rows])]).astype(int)
    w_addr = em.const(MemType.WGT, np.concatenate(rows))

    # With a pre-shift the bias must be added before it: by a GEMM micro-op per output when
    # its digits fit a weight block (1 cycle), else by the ALU (requant.py).
    gemm_bias = bias_block_digits(cfg, qop.bias) if qop.requant.pre_shift else None
    if gemm_bias is not None and _alu_bias_is_free(cfg, qop, g, max(ncb) * kk):
        gemm_bias = None
    passes = requant_passes(qop.requant, None if gemm_bias is not None else qop.bias, g.o)
    # Split a tile's stores when the ALU lane is the busier one (it waits for the stores).
    split_stores = _lane_cycles(cfg, qop, g, gemm_bias is not None) + \
        cfg.out_elem_bytes / cfg.axi_bytes > 0.6 * max(ncb) * kk
    vec_passes = [p for p in passes if p[2] is not None]
    # Tiles whose accumulators hold this operator's clipped outputs skip the reset (requant.py).
    reinit = None if gemm_bias is not None else reinit_passes(
        qop.requant, qop.bias, g.o, (g.c // g.groups) * g.kh * g.kw * 128 * 128)
    if gemm_bias is not None:
        bias_w_addr = em.const(MemType.WGT, gemm_bias)
        e_addr = em.const(MemType.INP, bias_input_element(cfg))
    if reinit is not None:
        vec_passes += [p for p in [reinit[0]] + reinit[1] if p[2] is not None]
    vectors = []                                 # distinct per-channel operands, by identity
    for p in vec_passes:
        if not any(v is p[2] for v in vectors):
            vectors.append(p[2])
    # Per-channel vectors stay in ACC for the whole operator when they are small: one copy at
    # the top of each ACC bank, so a tile's ALU passes only touch its own bank (lanes).
    resident = len(vectors) * ob_total <= em.acc_half // 4
    if not resident:
        reinit = None
        vectors = [p[2] for p in passes if p[2] is not None]
    # All vectors in one DRAM block (``[param][ob]``): one LOAD ACC per bank when resident
    # (a LOAD ACC waits until both compute lanes are idle).
    params_addr = em.const(MemType.ACC, np.concatenate(
        [_param_vectors(cfg, v) for v in vectors])) if vectors else 0
    param_addr = [params_addr + k * ob_total for k in range(len(vectors))]
    par_off = em.acc_half - len(vectors) * ob_total   # offset of the copy inside a bank
    acc_half = par_off if resident else em.acc_half   # room for a tile's accumulators
    clipped = np.zeros(cfg.acc_depth, bool)      # holds this operator's clipped outputs

    if plan is None:
        from ..cost import alu_tensor_cycles
        alu_cycles = sum(alu_tensor_cycles(cfg) if v is not None else 1 for _, _, v in passes)
        trials = split_stores and em.plan_trials
        plans = plan_conv(cfg, g, cb0, ncb, len(vectors), alu_cycles, name,
                          acc_half if resident else None, gemm_bias is not None,
                          keep=LANE_TRIALS if trials else 1, short_steps=split_stores)
        plan = _best_by_lanes(em, qop, in_shape, in_addr, out_addr, name, plans) \
            if trials else plans
    th, tw, tob, tcb = plan.th, plan.tw, plan.tob, plan.tcb
    tkh = plan.tkh or g.kh
    if tkh < g.kh and tcb != 1:
        raise LoweringError(f"{name}: splitting kernel rows needs tcb == 1, not {tcb}")
    ob_tiles = _ob_tiles(cb0, ncb, tob)
    if ob_tiles is None:
        raise LoweringError(f"{name}: tob={tob} does not split the groups evenly")

    start = len(em.insns)
    em.begin_op()
    b = em.b
    first_load_step = True
    if resident:
        for hh in (0, 1) if vectors else ():
            b.load(MemType.ACC, hh * em.acc_half + par_off, params_addr, 1,
                   len(vectors) * ob_total)
    for nb in range(nb_total):
        for oh0 in range(0, g.ho, th):
            th_v = min(th, g.ho - oh0)
            for ow0 in range(0, g.wo, tw):
                tw_v = min(tw, g.wo - ow0)
                cw = g.cols(tw_v)
                iw0 = ow0 * g.sw - g.pl
                xp0, xp1 = max(0, -iw0), max(0, iw0 + cw - g.w)
                p = th_v * tw_v
                for ob_s, ob_e, delta in ob_tiles:
                    tob_v = ob_e - ob_s
                    n_red = ncb[ob_s]
                    h_acc = em.tile()
                    acc0 = h_acc * em.acc_half          # the tile's ACC bank
                    if resident:
                        par = [acc0 + par_off + k * ob_total + ob_s
                               for k in range(len(param_addr))]
                    else:
                        par = [acc0 + tob * th * tw + k * tob for k in range(len(param_addr))]
                        for k, addr in enumerate(param_addr):
                            b.load(MemType.ACC, par[k], addr + ob_s, 1, tob_v)

                    def alu_pass(op, imm, vec, part=(0, tob_v, 0, th_v), acc0=acc0, par=par,
                                 p=p, tw_v=tw_v):
                        o_lo, o_hi, r_lo, r_hi = part
                        d0 = acc0 + o_lo * p + r_lo * tw_v
                        n = (r_hi - r_lo) * tw_v
                        if vec is None:
                            b.alu(op, em.kernel([(d0, 0, 0)]), o_hi - o_lo, n, dst=(p, 1),
                                  imm=imm)
                        else:
                            k = next(i for i, v in enumerate(vectors) if v is vec)
                            b.alu(op, em.kernel([(d0, par[k] + o_lo, 0)]), o_hi - o_lo, n,
                                  dst=(p, 1), src=(1, 0))
                    region = slice(acc0, acc0 + tob_v * p)
                    if reinit is not None and clipped[region].all():
                        tile_passes = reinit[1]
                        alu_pass(*reinit[0])
                    else:
                        tile_passes = passes
                        b.gemm(em.kernel([(acc0, 0, 0)]), tob_v, p, dst=(p, 1), reset=True)
                    em.tile_body()
                    for r0, i0 in [(r0, i0) for r0 in range(0, n_red, tcb)
                                   for i0 in range(0, g.kh, tkh)]:
                        tcb_v, tkh_v = min(tcb, n_red - r0), min(tkh, g.kh - i0)
                        r = g.rows(th_v, tkh_v)
                        ih0 = oh0 * g.sh - g.pt + i0 * g.dh
                        yp0, yp1 = max(0, -ih0), max(0, ih0 + r - g.h)
                        first_row, pitch = ih0 + yp0, g.w  # first loaded row, row pitch
                        rowskip = tkh_v == 1 and g.sh > 1
                        if rowskip:  # load only every sh-th row: the ones this step reads
                            r, pitch = th_v, g.sh * g.w
                            yp0 = ceil_div(max(0, -ih0), g.sh)
                            yp1 = sum(1 for k in range(th_v) if ih0 + k * g.sh >= g.h)
                            first_row = ih0 + yp0 * g.sh
                        if r - yp0 - yp1 < 1 or cw - xp0 - xp1 < 1:
                            raise LoweringError(f"{name}: a tile's input window lies entirely "
                                                f"in the padding; reduce the pads")
                        if max(yp0, yp1) > MAX_PAD:
                            raise LoweringError(f"{name}: a tile needs {max(yp0, yp1)} rows "
                                                f"of padding, more than {MAX_PAD}")
                        h = em.load_step()
                        inp0, wgt0 = h * em.inp_half, h * em.wgt_half
                        e_idx = inp0 + em.inp_half - 1   # the bias input element
                        bias_w = wgt0 + em.wgt_half - tob
                        if gemm_bias is not None and r0 == 0 and i0 == 0:
                            b.load(MemType.WGT, bias_w, bias_w_addr + ob_s, 1, tob_v)
                        # Weights first: they need not wait for the previous operator.
                        if shared:
                            b.load(MemType.WGT, wgt0, w_addr + woff[ob_s] + r0, tob_v,
                                   tcb_v, n_red)
                        elif tkh_v == g.kh:
                            b.load(MemType.WGT, wgt0, w_addr + woff[ob_s] + r0 * kk, tob_v,
                                   tcb_v * kk, n_red * kk)
                        else:
                            b.load(MemType.WGT, wgt0,
                                   w_addr + woff[ob_s] + r0 * kk + i0 * g.kw, tob_v,
                                   tkh_v * g.kw, n_red * kk)
                        if gemm_bias is not None and first_load_step:
                            for hh in (0, 1):
                                b.load(MemType.INP, hh * em.inp_half + em.inp_half - 1, e_addr)
                            first_load_step = False
                        nblk = (tob_v - 1) * delta + tcb_v
                        for cl in range(nblk):
                            cb = cb0[ob_s] + r0 + cl
                            b.load(MemType.INP, inp0 + cl * r * cw,
                                   in_addr + ((nb * cb_total + cb) * g.h + first_row) * g.w
                                   + iw0 + xp0,
                                   r - yp0 - yp1, cw - xp0 - xp1, pitch, (yp0, yp1, xp0, xp1))
                        em.end_load_step()
                        em.use_step()
                        if gemm_bias is not None and r0 == 0 and i0 == 0:
                            b.gemm(em.kernel([(acc0, e_idx, bias_w)]), tob_v, p,
                                   dst=(p, 1), wgt=(1, 0))
                        uops, loop = gemm_kernel(g, tcb_v, tob_v, th_v, tw_v, delta,
                                                 acc0, inp0, wgt0, tkh_v,
                                                 acc0 + acc_half - 3, shared, rowskip)
                        b.gemm(em.kernel(uops), **loop)
                        em.end_use_step()
                    em.tile_epilogue()
                    parts = _epilogue_parts(tob_v, th_v, split_stores)
                    for j, part in enumerate(parts):
                        for alu in tile_passes:
                            alu_pass(*alu, part=part)
                        if j < len(parts) - 1:
                            em.part_stores()
                        else:
                            em.end_tile_compute()
                            em.stores()
                        o_lo, o_hi, r_lo, r_hi = part
                        for ol in range(o_lo, o_hi):
                            ob = ob_s + ol
                            b.store(acc0 + ol * p + r_lo * tw_v,
                                    out_addr + ((nb * ob_total + ob) * g.ho + oh0 + r_lo)
                                    * g.wo + ow0, r_hi - r_lo, tw_v, g.wo)
                        if j < len(parts) - 1:
                            em.end_part_stores()
                    clipped[region] = True
                    if tob_v * p < 3:  # scratch micro-ops (gemm_kernel mode C)
                        clipped[acc0 + acc_half - 3:acc0 + acc_half] = False
                    em.end_stores()
    em.end_op(start, name)
    return plan
