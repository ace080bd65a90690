"""Renderers for the dense kernels: GEMM, im2col, depthwise convolution, 2-D pooling, resize.

Same kernel convention as :mod:`.renderer` (pointer arguments, then the parallel range).
Window loops are unrolled in Python with the valid output range of each kernel tap computed
here, so the generated inner loops have constant bounds and no per-element bounds checks.
"""

from __future__ import annotations

import llvmlite.ir as ir
import numpy as np

from . import buffers
from .renderer import F32, I32, I64, PTR, VOID, Kernel, KernelBuilder, f32, i64

__all__ = ["render_gemm", "render_gemv", "render_im2col", "pack_b", "pack_gemv", "padded_cols",
           "render_depthwise", "render_pool2d", "render_resize2d", "valid_range"]

_VEC = 8           # floats per vector register (AVX2); LLVM legalises it on other hosts
_MR = 6            # rows per micro-tile (12 vector accumulators)
_NR = 2 * _VEC     # columns per micro-tile
_KC = 256          # depth block
_NC = 256          # column block (a KC x NC block of B stays in L2)
_SPLIT_K = 4       # accumulator sets of 1-2 row tiles (GEMV): 8-16 FMAs in flight
_GEMV_TILES = 2    # column panels per parallel item of a single-row-group GEMM
_GEMV_STREAMS = 2  # column panels a thin (1-2 row) tile streams at once
_GEMV_W = 64       # columns of a one-row GEMV's weight block: 8 accumulators, 256 B per depth
#: Bytes ahead of the current depth step a GEMV block prefetches (into L1), one prefetch per
#: 64-byte line it reads. The hardware prefetcher alone left the stream short of L3 bandwidth:
#: with it the 1280x1000 GEMV went from 1.05-1.07x numpy's median time to 1.08-1.13x (two
#: threads, back-to-back calls, 3 A/B pairs) and about 8 % faster on one thread (best times).
_GEMV_PREFETCH_BYTES = 1536
_GEMV_ACC = 8      # vector accumulators a GEMV block keeps (FMA latency x issue width)


def valid_range(out_len: int, stride: int, offset: int, in_len: int):
    """Output indices ``o`` with ``0 <= o * stride + offset < in_len`` as ``(lo, hi)``."""
    lo = 0
    while lo < out_len and lo * stride + offset < 0:
        lo += 1
    hi = lo
    while hi < out_len and hi * stride + offset < in_len:
        hi += 1
    return lo, max(lo, hi)


def _splat(b, value):
    vt = ir.VectorType(F32, _VEC)
    v = b.insert_element(ir.Constant(vt, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    return b.shuffle_vector(v, ir.Constant(vt, ir.Undefined),
                            ir.Constant(ir.VectorType(ir.IntType(32), _VEC), [0] * _VEC))


def padded_cols(n: int) -> int:
    """``n`` rounded up to whole column panels (the packed-B and padded-C width)."""
    return -(-n // _NR) * _NR


def pack_b(b: np.ndarray) -> np.ndarray:
    """Pack a (K, N) matrix as column panels ``(Np/16, K, 16)``, zero-padded (numpy; used for
    constant weights once, and for activation operands of MatMul)."""
    k, n = b.shape
    npad = padded_cols(n)
    out = buffers.empty((npad // _NR, k, _NR), np.float32)
    full = n // _NR
    out[:full] = b[:, :full * _NR].reshape(k, full, _NR).transpose(1, 0, 2)
    if full < npad // _NR:
        out[full] = 0
        out[full, :, :n - full * _NR] = b[:, full * _NR:]
    return out


def _fp32_kernel(bias: str):
    """A kernel over ``C, A, B[, bias]`` (fp32) with the 8-wide FMA intrinsic declared:
    ``(builder, C, A, B, Bias or None, vector type, fma)``."""
    kb = KernelBuilder(3 + (bias != "none"))
    C, A, B = kb.ptrs[:3]
    vt = ir.VectorType(F32, _VEC)
    return (kb, C, A, B, kb.ptrs[3] if bias != "none" else None, vt,
            kb.intrinsic("llvm.fma.v8f32", vt, [vt, vt, vt]))


def render_gemm(M: int, N: int, K: int, a_strides, bias: str = "none", batch: int = 1,
                batch_strides=(0, 0, 0, 0)) -> Kernel:
    """``C[g] (M, Np) = A[g] (M, K) @ B[g] + bias`` for ``g < batch``, ``Np = padded_cols(N)``.

    Arguments (in order): C (row-major, width Np), A (element ``(i, k)`` at
    ``i * a_strides[0] + k * a_strides[1]``), B packed by :func:`pack_b` (or by
    :func:`render_im2col`), and a bias buffer when ``bias`` is ``"row"`` (M,), ``"col"``
    (Np,) or ``"full"`` (M, Np). ``batch_strides`` = strides of C, A, B and bias between
    batch entries. The parallel range is ``batch`` x row groups (6-row micro-tiles, then
    groups of 4, 2 and 1 rows) x column blocks of 256. Packed panels make every B access of the inner loop
    contiguous (no TLB misses on wide matrices).
    """
    Np = padded_cols(N)
    sam, sak = a_strides
    sbc, sba, sbb, sbbias = batch_strides
    kb, C, A, B, Bias, vt, fma_v = _fp32_kernel(bias)
    b = kb.b
    full_tiles = M // _MR
    rest, start = [], full_tiles * _MR
    for size in (4, 2, 1):
        if M - start >= size:
            rest.append((start, size))
            start += size
    n_groups = full_tiles + len(rest)
    n_tiles = Np // _NR

    def vload(ptr, idx):
        return b.load(kb.gep(ptr, idx), typ=vt, align=4)

    def vstore(val, ptr, idx):
        b.store(val, kb.gep(ptr, idx), align=4)

    def init_value(row, col, first, cbase, bias_base):
        """Accumulator start: the bias (first depth block) or the partial sum in C."""
        partial = vload(C, b.add(cbase, b.add(b.mul(row, i64(Np)), col)))
        if bias == "none":
            start = ir.Constant(vt, [0.0] * _VEC)
        elif bias == "row":
            start = _splat(b, kb.load(Bias, b.add(bias_base, row)))
        elif bias == "col":
            start = vload(Bias, b.add(bias_base, col))
        else:
            start = vload(Bias, b.add(bias_base, b.add(b.mul(row, i64(Np)), col)))
        return b.select(first, start, partial)

    def micro(rows, kc, kend, first, bases, jlo, jhi):
        """One tile of ``len(rows)`` rows for the column panels ``[jlo, jhi)``."""
        # Thin tiles (1-2 rows, e.g. a GEMV) have too few accumulators to hide the FMA
        # latency: they keep _SPLIT_K independent sets, one per depth index modulo
        # _SPLIT_K, added together at the end. They are bound by reading B, so they also
        # stream _GEMV_STREAMS panels at once (more cache-line fetches in flight, one
        # broadcast of A per depth index for all of them).
        split = _SPLIT_K if len(rows) <= 2 else 1
        npan = _GEMV_STREAMS if len(rows) <= 2 else 1
        if npan > 1:
            jmid = b.add(jlo, b.mul(b.sdiv(b.sub(jhi, jlo), i64(npan)), i64(npan)))
            with kb.loop(jlo, jmid, npan) as jt:
                panels(rows, kc, kend, first, bases, jt, npan, split)
            jlo = jmid
        with kb.loop(jlo, jhi) as jt:
            panels(rows, kc, kend, first, bases, jt, 1, split)

    def panels(rows, kc, kend, first, bases, jt, npan, split):
        """Panels ``[jt, jt + npan)`` of the tile: ``npan * 2`` vectors per row."""
        cbase, abase, bbase, biasb = bases
        nv = 2 * npan
        col = b.mul(jt, i64(_NR))
        # vector u of a row: panel u // 2, half u % 2
        vcol = [b.add(col, i64((u // 2) * _NR + (u % 2) * _VEC))
                for u in range(nv)]
        voff = [(u // 2) * K * _NR + (u % 2) * _VEC for u in range(nv)]
        panel = b.add(bbase, b.mul(jt, i64(K * _NR)))
        slots = [[[kb.alloca(vt) for _ in range(nv)] for _ in rows] for _ in range(split)]
        zero = ir.Constant(vt, [0.0] * _VEC)
        for r, row in enumerate(rows):
            for u in range(nv):
                b.store(init_value(row, vcol[u], first, cbase, biasb), slots[0][r][u])
                for s_ in range(1, split):
                    b.store(zero, slots[s_][r][u])

        def depth_step(k, sets):
            brow = b.add(panel, b.mul(k, i64(_NR)))
            bv = [vload(B, b.add(brow, i64(voff[u]))) for u in range(nv)]
            for r, row in enumerate(rows):
                a = kb.load(A, b.add(abase, b.add(b.mul(row, i64(sam)), b.mul(k, i64(sak)))))
                av = _splat(b, a)
                for u in range(nv):
                    b.store(b.call(fma_v, [av, bv[u], b.load(sets[r][u])]), sets[r][u])

        kmid = kc
        if split > 1:
            # [kc, kmid) in steps of split, then the remainder into the first set
            kmid = b.add(kc, b.mul(b.sdiv(b.sub(kend, kc), i64(split)), i64(split)))
            with kb.loop(kc, kmid, split) as k:
                for s_ in range(split):
                    depth_step(b.add(k, i64(s_)), slots[s_])
        with kb.loop(kmid, kend) as k:
            depth_step(k, slots[0])
        for r, row in enumerate(rows):
            rpos = b.add(cbase, b.mul(row, i64(Np)))
            for u in range(nv):
                acc = b.load(slots[0][r][u])
                for s_ in range(1, split):
                    acc = b.fadd(acc, b.load(slots[s_][r][u]))
                vstore(acc, C, b.add(rpos, vcol[u]))

    # One row group (a GEMV): narrow column blocks, so threads share the range finely.
    tiles_per_block = _NC // _NR if n_groups > 1 else _GEMV_TILES
    n_jb = (n_tiles + tiles_per_block - 1) // tiles_per_block

    def for_items(body):
        """Run ``body(rows, bases, jlo, jhi)`` for each parallel index ``p``, which names a
        batch entry, a column block and a row group (row groups vary fastest, so a thread's
        consecutive items share one block of B)."""
        with kb.loop(kb.lo, kb.hi) as p:
            rg = b.srem(p, i64(n_groups))
            t = b.sdiv(p, i64(n_groups))
            jb = b.srem(t, i64(n_jb))
            g = b.sdiv(t, i64(n_jb))
            jlo = b.mul(jb, i64(tiles_per_block))
            jhi = b.select(b.icmp_signed("<", b.add(jlo, i64(tiles_per_block)), i64(n_tiles)),
                           b.add(jlo, i64(tiles_per_block)), i64(n_tiles))
            bases = [b.mul(g, i64(s)) for s in (sbc, sba, sbb, sbbias)]
            if full_tiles:
                with b.if_then(b.icmp_signed("<", rg, i64(full_tiles))):
                    r0 = b.mul(rg, i64(_MR))
                    body([b.add(r0, i64(r)) for r in range(_MR)], bases, jlo, jhi)
            for index, (start_row, size) in enumerate(rest, start=full_tiles):
                with b.if_then(b.icmp_signed("==", rg, i64(index))):
                    body([i64(start_row + r) for r in range(size)], bases, jlo, jhi)

    # Depth blocks keep a block of B in L2 while the row groups reuse it. With one row group
    # (M <= 6, e.g. a GEMV) nothing reuses it: each panel is then read in one sequential
    # stream, and C is written once.
    kcb = K if n_groups == 1 else _KC
    with kb.loop(0, (K + kcb - 1) // kcb) as kblk:
        kc = b.mul(kblk, i64(kcb))
        kend = b.select(b.icmp_signed("<", b.add(kc, i64(kcb)), i64(K)),
                        b.add(kc, i64(kcb)), i64(K))
        first = b.icmp_signed("==", kblk, i64(0))
        for_items(lambda rows, bases, jlo, jhi: micro(rows, kc, kend, first, bases, jlo, jhi))
    return kb.finish(batch * n_jb * n_groups, min(M, _MR) * min(Np, tiles_per_block * _NR) * K)


def _gemv_blocks(n: int):
    """A GEMV's column blocks: ``(full 64-column blocks, width of the last, narrower block)``;
    the widths add up to :func:`padded_cols` ``(n)``."""
    np_ = padded_cols(n)
    return np_ // _GEMV_W, np_ % _GEMV_W


def pack_gemv(b: np.ndarray) -> np.ndarray:
    """Pack a (K, N) matrix for :func:`render_gemv`: blocks of 64 columns (the last one 16, 32
    or 48 wide, zero-padded), each stored depth-major ``(K, width)``, one after the other.

    A block is then one sequential stream of ``K * width`` floats, read by one thread with
    eight accumulators: the hardware prefetcher sees one stream per thread and every cache
    line fetched is used in full."""
    k, n = b.shape
    full, last = _gemv_blocks(n)
    padded = np.zeros((k, padded_cols(n)), np.float32)
    padded[:, :n] = b
    head = full * _GEMV_W
    out = buffers.empty(k * padded.shape[1], np.float32)
    out[:k * head].reshape(full, k, _GEMV_W)[:] = \
        padded[:, :head].reshape(k, full, _GEMV_W).transpose(1, 0, 2)
    out[k * head:] = padded[:, head:].reshape(-1)
    return out


def render_gemv(N: int, K: int, a_stride: int, bias: str = "none") -> Kernel:
    """``C (1, Np) = A (1, K) @ B + bias`` for one row of A, ``Np = padded_cols(N)``.

    Arguments: C, A (element ``k`` at ``k * a_stride``), B packed by :func:`pack_gemv`, and a
    bias buffer when ``bias`` is ``"row"`` (1,), ``"col"`` (Np,) or ``"full"`` (1, Np). The
    parallel range is the column blocks: each streams its ``K x 64`` block once into eight
    vector accumulators (narrow last blocks keep several accumulator sets over the depth
    instead, so there are always eight FMA chains in flight) and writes C once.
    """
    full, last = _gemv_blocks(N)
    kb, C, A, B, Bias, vt, fma_v = _fp32_kernel(bias)
    b = kb.b
    zero = ir.Constant(vt, [0.0] * _VEC)
    prefetch = kb.intrinsic("llvm.prefetch.p0", VOID, [PTR, I32, I32, I32])

    def block(width, col, base):
        nv = width // _VEC
        sets = max(1, _GEMV_ACC // nv)
        acc = [[kb.alloca(vt) for _ in range(nv)] for _ in range(sets)]
        for s_ in range(sets):
            for u in range(nv):
                b.store(zero, acc[s_][u])

        def step(k, regs):
            av = _splat(b, kb.load(A, b.mul(k, i64(a_stride)) if a_stride != 1 else k))
            row = b.add(base, b.mul(k, i64(width)))
            for line in range(0, width, 16):
                # (not inbounds: the last steps prefetch past the block, even past B, which
                # a prefetch may do: it never faults)
                ahead = b.add(row, i64(_GEMV_PREFETCH_BYTES // 4 + line))
                b.call(prefetch, [b.gep(B, [ahead], source_etype=F32), ir.Constant(I32, 0),
                                  ir.Constant(I32, 3), ir.Constant(I32, 1)])
            for u in range(nv):
                bv = b.load(kb.gep(B, b.add(row, i64(u * _VEC))), typ=vt, align=4)
                b.store(b.call(fma_v, [av, bv, b.load(regs[u])]), regs[u])

        kmain = K // sets * sets if sets > 1 else 0
        if sets > 1:
            with kb.loop(0, kmain, sets) as k:
                for s_ in range(sets):
                    step(b.add(k, i64(s_)), acc[s_])
        with kb.loop(kmain, K) as k:
            step(k, acc[0])
        for u in range(nv):
            c = b.add(col, i64(u * _VEC))
            v = b.load(acc[0][u])
            for s_ in range(1, sets):
                v = b.fadd(v, b.load(acc[s_][u]))
            if bias == "row":
                v = b.fadd(v, _splat(b, kb.load(Bias, i64(0))))
            elif bias != "none":
                v = b.fadd(v, b.load(kb.gep(Bias, c), typ=vt, align=4))
            b.store(v, kb.gep(C, c), align=4)

    with kb.loop(kb.lo, kb.hi) as p:
        if full:
            with kb.if_(b.icmp_signed("<", p, i64(full))):
                block(_GEMV_W, b.mul(p, i64(_GEMV_W)), b.mul(p, i64(K * _GEMV_W)))
        if last:
            with kb.if_(b.icmp_signed("==", p, i64(full))):
                block(last, i64(full * _GEMV_W), i64(full * _GEMV_W * K))
    return kb.finish(full + (last > 0), _GEMV_W * K)


def render_im2col(C: int, H: int, W: int, kernel, stride, pads, dilation,
                  groups: int = 1) -> Kernel:
    """Convolution patches of x (C, H, W) packed as GEMM B operands, parallel over channels.

    Row ``r = (c, ky, kx)`` (within its group), column ``q = (oy, ox)``; the value
    ``x[c, oy*s + ky*d - pad, ...]`` (0 outside) goes to the packed-panel layout of
    :func:`pack_b`: ``cols[g][q // 16][r][q % 16]`` with ``Np = padded_cols(OH*OW)`` columns
    per group. Columns ``q >= OH*OW`` are never written (the caller zeroes them once).
    ``pads`` = (top, left, bottom, right).
    """
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    pt, pl, pb, pr = pads
    oh = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    rows = (C // groups) * kh * kw            # rows per group
    Np = padded_cols(oh * ow)
    kb = KernelBuilder(2)
    b = kb.b
    cols, x = kb.ptrs
    zero = f32(0.0)

    def dest(row, q):
        # (q // 16) * rows * 16 + row * 16 + q % 16, with shifts (16 is a power of two)
        tile = b.ashr(q, i64(4))
        lane = b.and_(q, i64(_NR - 1))
        return b.add(b.add(b.mul(tile, i64(rows * _NR)), b.mul(row, i64(_NR))), lane)

    ranges = [valid_range(ow, sw, kx * dw - pl, W) for kx in range(kw)]
    table_ty = ir.ArrayType(I64, kw)
    xlo_table = ir.GlobalVariable(kb.module, table_ty, "xlo")
    xlo_table.initializer = ir.Constant(table_ty, [lo for lo, _ in ranges])
    xlo_table.global_constant = True
    xlo_table.linkage = "internal"
    xhi_table = ir.GlobalVariable(kb.module, table_ty, "xhi")
    xhi_table.initializer = ir.Constant(table_ty, [hi for _, hi in ranges])
    xhi_table.global_constant = True
    xhi_table.linkage = "internal"
    with kb.loop(kb.lo, kb.hi) as c:
        g = b.sdiv(c, i64(C // groups))
        cg = b.srem(c, i64(C // groups))
        gbase = b.mul(g, i64(rows * Np))
        for ky in range(kh):
            ylo, yhi = valid_range(oh, sh, ky * dh - pt, H)
            # kx is a run-time loop (ky is unrolled): 7x7 kernels would otherwise unroll into
            # 49 copies and take seconds to compile. Its valid column ranges come from tables.
            with kb.loop(0, kw) as kx:
                xlo = b.load(b.gep(xlo_table, [i64(0), kx], inbounds=True), typ=I64)
                xhi = b.load(b.gep(xhi_table, [i64(0), kx], inbounds=True), typ=I64)
                xoff = b.sub(b.mul(kx, i64(dw)), i64(pl))
                row = b.add(b.mul(cg, i64(kh * kw)), b.add(i64(ky * kw), kx))
                # patch rows that fall entirely in the padding
                for lo, hi in ((0, ylo * ow), (yhi * ow, oh * ow)):
                    if hi > lo:
                        with kb.loop(lo, hi) as q:
                            kb.store(zero, cols, b.add(gbase, dest(row, q)))
                if yhi <= ylo:
                    continue
                with kb.loop(ylo, yhi) as oy:
                    qrow = b.mul(oy, i64(ow))
                    iy = b.add(b.mul(oy, i64(sh)), i64(ky * dh - pt))
                    xbase = b.add(b.mul(c, i64(H * W)), b.mul(iy, i64(W)))
                    with kb.loop(0, xlo) as ox:
                        kb.store(zero, cols, b.add(gbase, dest(row, b.add(qrow, ox))))
                    with kb.loop(xhi, ow) as ox:
                        kb.store(zero, cols, b.add(gbase, dest(row, b.add(qrow, ox))))
                    with kb.loop(xlo, xhi) as ox:
                        ix = b.add(b.mul(ox, i64(sw)), xoff)
                        kb.store(kb.load(x, b.add(xbase, ix)), cols,
                                 b.add(gbase, dest(row, b.add(qrow, ox))))
    return kb.finish(C, kh * kw * oh * ow)


def render_depthwise(C: int, H: int, W: int, kernel, stride, pads, dilation,
                     has_bias: bool) -> Kernel:
    """Depthwise (one filter per channel) convolution, parallel over channels.

    Arguments: out (C, OH, OW), x (C, H, W), w (C, KH, KW)[, bias (C,)].
    """
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    pt, pl, pb, pr = pads
    oh = (H + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (W + pl + pr - dw * (kw - 1) - 1) // sw + 1
    kb = KernelBuilder(4 if has_bias else 3)
    b = kb.b
    out, x, w = kb.ptrs[:3]
    with kb.loop(kb.lo, kb.hi) as c:
        obase = b.mul(c, i64(oh * ow))
        xbase = b.mul(c, i64(H * W))
        init = kb.load(kb.ptrs[3], c) if has_bias else f32(0.0)
        with kb.loop(0, oh * ow) as q:
            kb.store(init, out, b.add(obase, q))
        for ky in range(kh):
            ylo, yhi = valid_range(oh, sh, ky * dh - pt, H)
            for kx in range(kw):
                xlo, xhi = valid_range(ow, sw, kx * dw - pl, W)
                if yhi <= ylo or xhi <= xlo:
                    continue
                wv = kb.load(w, b.add(b.mul(c, i64(kh * kw)), i64(ky * kw + kx)))
                with kb.loop(ylo, yhi) as oy:
                    orow = b.add(obase, b.mul(oy, i64(ow)))
                    iy = b.add(b.mul(oy, i64(sh)), i64(ky * dh - pt))
                    xrow = b.add(xbase, b.mul(iy, i64(W)))
                    with kb.loop(xlo, xhi) as ox:
                        ix = b.add(b.mul(ox, i64(sw)), i64(kx * dw - pl))
                        pos = b.add(orow, ox)
                        v = kb.load(x, b.add(xrow, ix))
                        kb.store(b.call(kb.intrinsic("llvm.fma.f32", F32, [F32] * 3),
                                        [wv, v, kb.load(out, pos)]), out, pos)
    return kb.finish(C, kh * kw * oh * ow)


def render_pool2d(kind: str, NC: int, H: int, W: int, out_hw, kernel, stride, pads,
                  dilation) -> Kernel:
    """Max (``kind="max"``) or average (``"avg"``) pooling of (NC, H, W), parallel over NC.

    Arguments: out (NC, OH, OW), x (NC, H, W) and, for ``avg``, ``inv_count`` (OH*OW,): the
    reciprocal of each window's divisor (so ``count_include_pad`` is decided by the caller).
    """
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    pt, pl = pads[0], pads[1]
    oh, ow = out_hw
    kb = KernelBuilder(3 if kind == "avg" else 2)
    b = kb.b
    out, x = kb.ptrs[:2]
    maxnum = kb.intrinsic("llvm.maxnum.f32", F32, [F32, F32])
    with kb.loop(kb.lo, kb.hi) as c:
        obase = b.mul(c, i64(oh * ow))
        xbase = b.mul(c, i64(H * W))
        init = f32(float("-inf")) if kind == "max" else f32(0.0)
        with kb.loop(0, oh * ow) as q:
            kb.store(init, out, b.add(obase, q))
        for ky in range(kh):
            ylo, yhi = valid_range(oh, sh, ky * dh - pt, H)
            for kx in range(kw):
                xlo, xhi = valid_range(ow, sw, kx * dw - pl, W)
                if yhi <= ylo or xhi <= xlo:
                    continue
                with kb.loop(ylo, yhi) as oy:
                    orow = b.add(obase, b.mul(oy, i64(ow)))
                    iy = b.add(b.mul(oy, i64(sh)), i64(ky * dh - pt))
                    xrow = b.add(xbase, b.mul(iy, i64(W)))
                    with kb.loop(xlo, xhi) as ox:
                        ix = b.add(b.mul(ox, i64(sw)), i64(kx * dw - pl))
                        pos = b.add(orow, ox)
                        v = kb.load(x, b.add(xrow, ix))
                        cur = kb.load(out, pos)
                        new = b.call(maxnum, [cur, v]) if kind == "max" else b.fadd(cur, v)
                        kb.store(new, out, pos)
        if kind == "avg":
            with kb.loop(0, oh * ow) as q:
                pos = b.add(obase, q)
                kb.store(b.fmul(kb.load(out, pos), kb.load(kb.ptrs[2], q)), out, pos)
    return kb.finish(NC, kh * kw * oh * ow)


def render_resize2d(mode: str, NC: int, H: int, W: int, OH: int, OW: int) -> Kernel:
    """Resize the last two axes of (NC, H, W) through precomputed index/weight tables.

    ``nearest`` arguments: out, x, iy (OH,) int64, ix (OW,) int64.
    ``linear`` arguments: out, x, y0, y1 (OH,) int64, wy (OH,) f32, x0, x1 (OW,) int64,
    wx (OW,) f32 (weight of the second sample).
    """
    kb = KernelBuilder(4 if mode == "nearest" else 8)
    b = kb.b
    out, x = kb.ptrs[:2]
    with kb.loop(kb.lo, kb.hi) as c:
        obase = b.mul(c, i64(OH * OW))
        xbase = b.mul(c, i64(H * W))
        with kb.loop(0, OH) as oy:
            orow = b.add(obase, b.mul(oy, i64(OW)))
            if mode == "nearest":
                xrow = b.add(xbase, b.mul(kb.load(kb.ptrs[2], oy, I64), i64(W)))
                with kb.loop(0, OW) as ox:
                    v = kb.load(x, b.add(xrow, kb.load(kb.ptrs[3], ox, I64)))
                    kb.store(v, out, b.add(orow, ox))
            else:
                r0 = b.add(xbase, b.mul(kb.load(kb.ptrs[2], oy, I64), i64(W)))
                r1 = b.add(xbase, b.mul(kb.load(kb.ptrs[3], oy, I64), i64(W)))
                wy = kb.load(kb.ptrs[4], oy)
                with kb.loop(0, OW) as ox:
                    i0 = kb.load(kb.ptrs[5], ox, I64)
                    i1 = kb.load(kb.ptrs[6], ox, I64)
                    wx = kb.load(kb.ptrs[7], ox)
                    top0 = kb.load(x, b.add(r0, i0))
                    top = b.fadd(top0, b.fmul(b.fsub(kb.load(x, b.add(r0, i1)), top0), wx))
                    bot0 = kb.load(x, b.add(r1, i0))
                    bot = b.fadd(bot0, b.fmul(b.fsub(kb.load(x, b.add(r1, i1)), bot0), wx))
                    kb.store(b.fadd(top, b.fmul(b.fsub(bot, top), wy)), out, b.add(orow, ox))
    return kb.finish(NC, OH * OW)
