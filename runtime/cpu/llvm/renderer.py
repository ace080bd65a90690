"""Render LLVM IR for one operator at one shape: the first step of the CPU fallback.

Every kernel is a function ``void k_<hash>(ptr noalias a0, ..., i64 lo, i64 hi)`` whose outermost
loop runs over ``[lo, hi)``, so :mod:`.program` can split that range across threads (ctypes
releases the GIL during the call). Shapes, strides and attributes are baked into the IR as
constants: LLVM then sees plain counted loops with unit-stride inner bodies and vectorises them
at -O3 for the host CPU. Transcendental functions are inlined polynomial approximations
(:class:`MathLib`) so that they vectorise too.

This module only builds IR text (with ``llvmlite.ir``); it never compiles.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import llvmlite.ir as ir

__all__ = ["Kernel", "KernelBuilder", "MathLib", "collapse", "render_elementwise",
           "render_rows", "render_softmax_axis", "render_copy_runs", "F32", "I64", "LLVM_TYPES"]

F32 = ir.FloatType()
F64 = ir.DoubleType()
I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

#: numpy dtype -> (LLVM type, is signed integer, is float)
LLVM_TYPES = {
    np.dtype(np.float32): (F32, False, True),
    np.dtype(np.float64): (F64, False, True),
    np.dtype(np.int8): (I8, True, False),
    np.dtype(np.uint8): (I8, False, False),
    np.dtype(np.int32): (I32, True, False),
    np.dtype(np.int64): (I64, True, False),
}

#: Flags that let LLVM reassociate and contract (FMA) float arithmetic in reductions.
FAST = ("reassoc", "contract", "nsz", "arcp")


@dataclass
class Kernel:
    """A rendered kernel: IR text, its symbol, pointer-argument count and parallel extent."""
    ir: str
    symbol: str
    n_ptrs: int
    extent: int
    #: rough work per unit of the parallel range (elements touched), to decide on threading
    work_per_item: int = 1


_MARKER = re.compile(r'^!(\d+) = !\{ !"pyvta\.interleave \d+ (\d+)" \}$', re.M)


def _loop_ids(text: str) -> str:
    """Turn the interleave markers of :meth:`KernelBuilder.loop` into loop IDs: LLVM only
    reads loop metadata from a distinct node whose first operand is the node itself, which
    ``llvmlite.ir`` cannot build."""
    if "pyvta.interleave" not in text:
        return text
    free = max(int(k) for k in re.findall(r"^!(\d+) = ", text, re.M)) + 1
    extra = []

    def loop_id(m):
        hint = free + len(extra)
        extra.append(f'!{hint} = !{{!"llvm.loop.interleave.count", i32 {m.group(2)}}}')
        return f"!{m.group(1)} = distinct !{{!{m.group(1)}, !{hint}}}"
    text = _MARKER.sub(loop_id, text)
    return "\n".join([text.rstrip("\n")] + extra) + "\n" if extra else text


def i64(v) -> ir.Constant:
    return ir.Constant(I64, int(v))


def f32(v) -> ir.Constant:
    return ir.Constant(F32, float(v))


class KernelBuilder:
    """A kernel function under construction, with loop and memory helpers."""

    def __init__(self, n_ptrs: int):
        self.module = ir.Module()
        fty = ir.FunctionType(VOID, [PTR] * n_ptrs + [I64, I64])
        self.fn = ir.Function(self.module, fty, "kern")
        self.ptrs = list(self.fn.args[:n_ptrs])
        for p in self.ptrs:
            p.add_attribute("noalias")
        self.lo, self.hi = self.fn.args[n_ptrs:]
        self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.n_ptrs = n_ptrs
        self._blocks = 0

    def intrinsic(self, name: str, ret, args) -> ir.Function:
        """Declare (once) an LLVM intrinsic such as ``llvm.fma.f32``."""
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def call(self, name: str, *args, ty=F32):
        return self.b.call(self.intrinsic(name, ty, [a.type for a in args]), list(args))

    @contextmanager
    def loop(self, lo, hi, step=1, interleave: int | None = None):
        """``for i in range(lo, hi, step)`` (step > 0); yields the i64 induction variable.

        ``interleave``: ask LLVM's loop vectoriser to run this many vector iterations side
        by side (``llvm.loop.interleave.count``). Its cost model keeps one for a loop with
        a division or a long polynomial, whose iterations then wait on each other's
        latency: the float32 ``exp`` over 401K elements took 246 us on one thread, 183 us
        with 4 (sigmoid 311 -> 224 us, tanh 196 -> 176 us; onnxruntime's ``exp`` 170 us).
        """
        b = self.b
        lo = i64(lo) if isinstance(lo, int) else lo
        hi = i64(hi) if isinstance(hi, int) else hi
        self._blocks += 1
        n = self._blocks
        pre = b.block
        head = self.fn.append_basic_block(f"h{n}")
        body = self.fn.append_basic_block(f"b{n}")
        end = self.fn.append_basic_block(f"e{n}")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, f"i{n}")
        i.add_incoming(lo, pre)
        b.cbranch(b.icmp_signed("<", i, hi), body, end)
        b.position_at_end(body)
        yield i
        nxt = b.add(i, i64(step), flags=["nsw"])
        i.add_incoming(nxt, b.block)
        latch = b.branch(head)
        if interleave:
            # A marker node, made a real (self-referencing) loop ID in finish().
            latch.set_metadata("llvm.loop", self.module.add_metadata(
                [ir.MetaDataString(self.module, f"pyvta.interleave {n} {int(interleave)}")]))
        b.position_at_end(end)

    @contextmanager
    def if_(self, cond):
        """Emit the body only when ``cond`` (an i1) holds."""
        b = self.b
        self._blocks += 1
        then = self.fn.append_basic_block(f"t{self._blocks}")
        end = self.fn.append_basic_block(f"f{self._blocks}")
        b.cbranch(cond, then, end)
        b.position_at_end(then)
        yield
        b.branch(end)
        b.position_at_end(end)

    def gep(self, ptr, idx, ty=F32):
        return self.b.gep(ptr, [idx], inbounds=True, source_etype=ty)

    def load(self, ptr, idx, ty=F32, align=None):
        return self.b.load(self.gep(ptr, idx, ty), typ=ty, align=align)

    def store(self, value, ptr, idx):
        self.b.store(value, self.gep(ptr, idx, value.type))

    def offset(self, terms, base=0):
        """``base + sum(index * stride)`` as i64, skipping zero strides."""
        b = self.b
        acc = i64(base)
        for idx, stride in terms:
            if stride == 0:
                continue
            t = idx if stride == 1 else b.mul(idx, i64(stride), flags=["nsw"])
            acc = t if (isinstance(acc, ir.Constant) and acc.constant == 0) else \
                b.add(acc, t, flags=["nsw"])
        return acc

    def alloca(self, ty, count=1):
        """A stack slot (placed in the entry block so LLVM promotes it to registers)."""
        with self.b.goto_entry_block():
            return self.b.alloca(ty, size=count)

    def finish(self, extent: int, work_per_item: int = 1) -> Kernel:
        self.b.ret_void()
        text = _loop_ids(str(self.module))
        symbol = "k_" + hashlib.sha256(text.encode()).hexdigest()[:20]
        text = text.replace('@"kern"', f'@"{symbol}"')
        return Kernel(text, symbol, self.n_ptrs, int(extent), int(work_per_item))


class MathLib:
    """Scalar float32 math written so that LLVM vectorises it (no libm calls)."""

    def __init__(self, kb: KernelBuilder):
        self.kb = kb
        self.b = kb.b

    def fma(self, a, x, c):
        return self.kb.call("llvm.fma.f32", a, x, c)

    def poly(self, x, coeffs):
        """Horner evaluation, highest-order coefficient first."""
        acc = f32(coeffs[0])
        for c in coeffs[1:]:
            acc = self.fma(acc, x, f32(c))
        return acc

    def select_lt(self, a, b_, then, other):
        return self.b.select(self.b.fcmp_ordered("<", a, b_), then, other)

    def min(self, a, b_):
        return self.kb.call("llvm.minnum.f32", a, b_)

    def max(self, a, b_):
        return self.kb.call("llvm.maxnum.f32", a, b_)

    def abs(self, x):
        return self.kb.call("llvm.fabs.f32", x)

    def exp(self, x):
        """e**x to about 2 ulp (Cephes-style range reduction and a degree-6 polynomial)."""
        b = self.b
        xc = self.min(self.max(x, f32(-87.33654)), f32(88.37626))
        n = self.kb.call("llvm.rint.f32", b.fmul(xc, f32(1.44269504088896341)))
        r = self.fma(n, f32(-0.693359375), xc)
        r = self.fma(n, f32(2.12194440e-4), r)
        z = b.fmul(r, r)
        p = self.poly(r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                          1.6666665459e-1, 5.0000001201e-1])
        p = b.fadd(self.fma(p, z, r), f32(1.0))
        ni = b.fptosi(n, I32)
        scale = b.bitcast(b.shl(b.add(ni, ir.Constant(I32, 127)), ir.Constant(I32, 23)), F32)
        y = b.fmul(p, scale)
        # Overflow gives +inf and NaN stays NaN, as expf does.
        y = b.select(b.fcmp_ordered(">", x, f32(88.72283)), f32(float("inf")), y)
        y = b.select(b.fcmp_ordered("<", x, f32(-87.33654)), f32(0.0), y)  # denormals flush to 0
        return b.select(b.fcmp_unordered("uno", x, x), x, y)

    def sigmoid(self, x):
        b = self.b
        return b.fdiv(f32(1.0), b.fadd(f32(1.0), self.exp(b.fsub(f32(0.0), x))))

    #: tanh(x) ~ x P(u) / Q(u), u = (x / TANH_CLAMP)^2, |x| <= TANH_CLAMP (where float32
    #: tanh rounds to +-1): a (6, 3) rational fitted to tanh by iteratively reweighted least
    #: squares for this project (1.7e-8 relative error in float64, ~4e-7 evaluated in float32).
    TANH_CLAMP = 7.90531110763549805
    TANH_P = (0.9999999832795101, 8.114602765063188, 11.684383432914428, 2.4251028009129922,
              -0.22720433410046026, 0.022947546449815573)
    TANH_Q = (1.0, 28.94590767323823, 93.93422434169048, 58.09884954058883)

    def tanh(self, x):
        """tanh as one rational function (about 14 vector operations and one division)."""
        b = self.b
        c = self.TANH_CLAMP
        xc = self.min(self.max(x, f32(-c)), f32(c))
        t = b.fmul(xc, f32(1.0 / c))
        u = b.fmul(t, t)
        p = self.poly(u, self.TANH_P[::-1])
        q = self.poly(u, self.TANH_Q[::-1])
        y = b.fdiv(b.fmul(xc, p), q)
        # Beyond the clamp float32 tanh is exactly +-1 (the fit ends a few ulp short of it).
        y = b.select(b.fcmp_ordered(">=", self.abs(x), f32(c)),
                     self.kb.call("llvm.copysign.f32", f32(1.0), x), y)
        return b.select(b.fcmp_unordered("uno", x, x), x, y)

    #: erf(x) ~ x P(u) / Q(u), u = (x / ERF_CLAMP)^2, fitted like tanh (5e-8 relative in
    #: float64, ~4e-7 in float32); beyond ERF_CLAMP float32 erf is exactly +-1.
    ERF_CLAMP = 3.92
    ERF_P = (1.1283791090565132, 3.071764430528564, 11.940952163238853, 13.427553543230077,
             7.907897092070602, -1.6773994027117871, 0.2623315076103147)
    ERF_Q = (1.0, 7.8443879196875965, 27.151872940911534, 52.07216193308275,
             53.292569543425934)

    def erf(self, x):
        """erf as one rational function (about 17 vector operations and one division)."""
        b = self.b
        c = self.ERF_CLAMP
        xc = self.min(self.max(x, f32(-c)), f32(c))
        t = b.fmul(xc, f32(1.0 / c))
        u = b.fmul(t, t)
        y = b.fdiv(b.fmul(xc, self.poly(u, self.ERF_P[::-1])), self.poly(u, self.ERF_Q[::-1]))
        y = b.select(b.fcmp_ordered(">=", self.abs(x), f32(c)),
                     self.kb.call("llvm.copysign.f32", f32(1.0), x), y)
        return b.select(b.fcmp_unordered("uno", x, x), x, y)


def collapse(shape, strides_list):
    """Merge dimensions that are contiguous in every array and drop size-1 dimensions.

    ``strides_list`` holds one stride tuple (in elements) per array. Returns the new shape and
    strides; a scalar becomes shape ``(1,)``.
    """
    dims = [(n, [s[i] for s in strides_list]) for i, n in enumerate(shape) if n != 1]
    if not dims:
        return (1,), [(0,) for _ in strides_list]
    merged = [dims[0]]
    for n, st in dims[1:]:
        pn, pst = merged[-1]
        if all(ps == s * n for ps, s in zip(pst, st)):
            merged[-1] = (pn * n, st)
        else:
            merged.append((n, st))
    shape = tuple(n for n, _ in merged)
    strides = [tuple(st[k] for _, st in merged) for k in range(len(strides_list))]
    return shape, strides


def _convert(b, value, src: np.dtype, dst: np.dtype):
    """Convert a loaded scalar between numpy dtypes (float <-> int, widening, narrowing)."""
    if src == dst:
        return value
    sty, ssigned, sfloat = LLVM_TYPES[np.dtype(src)]
    dty, dsigned, dfloat = LLVM_TYPES[np.dtype(dst)]
    if sfloat and dfloat:
        return b.fpext(value, dty) if dty == F64 else b.fptrunc(value, dty)
    if sfloat:
        return b.fptosi(value, dty) if dsigned else b.fptoui(value, dty)
    if dfloat:
        return b.sitofp(value, dty) if ssigned else b.uitofp(value, dty)
    if sty.width < dty.width:
        return b.sext(value, dty) if ssigned else b.zext(value, dty)
    if sty.width > dty.width:
        return b.trunc(value, dty)
    return value


def render_elementwise(out_shape, out_strides, out_dtype, inputs, expr, out_offset=0,
                       compute_dtype=np.float32, cost: int = 1) -> Kernel:
    """A loop nest over ``out_shape`` computing ``out = expr(kb, math, *loaded_inputs)``.

    Parameters
    ----------
    out_shape, out_strides, out_dtype, out_offset :
        The output view (strides and offset in elements; arbitrary, so the same kernel writes
        slices, transposes and concatenation parts).
    inputs : list of (strides, offset, dtype)
        Input views over ``out_shape`` (broadcast dimensions have stride 0).
    expr : callable or None
        ``expr(kb, math, *values) -> value`` on ``compute_dtype`` scalars; ``None`` copies the
        single input, converting its dtype to ``out_dtype``.
    cost : int
        Relative work per element (about 10 for exp/tanh/erf), for the threading decision.
    """
    out_dtype = np.dtype(out_dtype)
    strides_all = [tuple(out_strides)] + [tuple(s) for s, _, _ in inputs]
    shape, strides = collapse(tuple(out_shape), strides_all)
    if expr is None and len(inputs) == 1 and np.dtype(inputs[0][2]) == out_dtype and \
            strides[0][-1] == 1 and strides[1][-1] == 1:
        return _render_row_copy(shape, strides, out_dtype, out_offset, inputs[0][1], cost)
    kb = KernelBuilder(1 + len(inputs))
    math = MathLib(kb)
    b = kb.b
    rank = len(shape)

    def body(idx):
        vals = []
        for k, (_, off, dt) in enumerate(inputs):
            dt = np.dtype(dt)
            pos = kb.offset(zip(idx, strides[k + 1]), off)
            v = kb.load(kb.ptrs[k + 1], pos, LLVM_TYPES[dt][0])
            vals.append(v if expr is None else _convert(b, v, dt, compute_dtype))
        if expr is None:
            res = _convert(b, vals[0], np.dtype(inputs[0][2]), out_dtype)
        else:
            res = _convert(b, expr(kb, math, *vals), np.dtype(compute_dtype), out_dtype)
        kb.store(res, kb.ptrs[0], kb.offset(zip(idx, strides[0]), out_offset))

    def nest(d, idx):
        if d == rank:
            body(idx)
            return
        lo, hi = (kb.lo, kb.hi) if d == 0 else (0, shape[d])
        # the innermost loop of a computed expression (exp, tanh, erf, a division) keeps
        # four vectors in flight; a plain memory pass is left to LLVM's own choice
        with kb.loop(lo, hi, interleave=4 if d == rank - 1 and cost > 1 else None) as i:
            nest(d + 1, idx + [i])

    nest(0, [])
    inner = int(np.prod(shape[1:], dtype=np.int64)) if rank > 1 else 1
    return kb.finish(shape[0], inner * cost)


def _render_row_copy(shape, strides, dtype, out_offset, in_offset, cost) -> Kernel:
    """A copy whose innermost dimension is contiguous on both sides: one ``llvm.memcpy`` per
    row (libc's memcpy beats a vector loop on long rows; :func:`_emit_copy`)."""
    kb = KernelBuilder(2)
    b = kb.b
    ty = LLVM_TYPES[np.dtype(dtype)][0]
    row_bytes = shape[-1] * np.dtype(dtype).itemsize
    rank = len(shape)
    if rank == 1:
        # The parallel range is the row itself: copy elements [lo, hi).
        dst = kb.gep(kb.ptrs[0], b.add(kb.lo, i64(out_offset)), ty)
        src = kb.gep(kb.ptrs[1], b.add(kb.lo, i64(in_offset)), ty)
        nbytes = b.mul(b.sub(kb.hi, kb.lo), i64(np.dtype(dtype).itemsize))
        _emit_copy(kb, dst, src, nbytes)
        return kb.finish(shape[0], cost)

    def nest(d, idx):
        if d == rank - 1:
            dst = kb.gep(kb.ptrs[0], kb.offset(zip(idx, strides[0][:-1]), out_offset), ty)
            src = kb.gep(kb.ptrs[1], kb.offset(zip(idx, strides[1][:-1]), in_offset), ty)
            _emit_copy(kb, dst, src, i64(row_bytes))
            return
        lo, hi = (kb.lo, kb.hi) if d == 0 else (0, shape[d])
        with kb.loop(lo, hi) as i:
            nest(d + 1, idx + [i])

    nest(0, [])
    return kb.finish(shape[0], int(np.prod(shape[1:], dtype=np.int64)) * cost)


def render_softmax_axis(kind: str, outer: int, length: int, inner: int) -> Kernel:
    """Softmax / LogSoftmax over the middle axis of a contiguous ``(outer, length, inner)``
    view (e.g. channels of NCHW), vectorised across ``inner``; parallel over ``outer``.

    Arguments: out, x, scratch (``outer * 2 * inner`` floats: running max and sum).
    """
    kb = KernelBuilder(3)
    math = MathLib(kb)
    b = kb.b
    out, x, scratch = kb.ptrs
    with kb.loop(kb.lo, kb.hi) as o:
        base = b.mul(o, i64(length * inner))
        mrow = b.mul(o, i64(2 * inner))
        srow = b.add(mrow, i64(inner))
        with kb.loop(0, inner) as i:
            kb.store(f32(float("-inf")), scratch, b.add(mrow, i))
            kb.store(f32(0.0), scratch, b.add(srow, i))
        with kb.loop(0, length) as r:
            rbase = b.add(base, b.mul(r, i64(inner)))
            with kb.loop(0, inner) as i:
                mpos = b.add(mrow, i)
                kb.store(math.max(kb.load(scratch, mpos), kb.load(x, b.add(rbase, i))),
                         scratch, mpos)
        with kb.loop(0, length) as r:
            rbase = b.add(base, b.mul(r, i64(inner)))
            with kb.loop(0, inner) as i:
                pos = b.add(rbase, i)
                e = math.exp(b.fsub(kb.load(x, pos), kb.load(scratch, b.add(mrow, i))))
                if kind == "softmax":
                    kb.store(e, out, pos)
                spos = b.add(srow, i)
                kb.store(b.fadd(kb.load(scratch, spos), e), scratch, spos)
        with kb.loop(0, inner) as i:
            spos = b.add(srow, i)
            s = kb.load(scratch, spos)
            if kind == "softmax":
                kb.store(b.fdiv(f32(1.0), s), scratch, spos)
            else:
                kb.store(b.fadd(kb.load(scratch, b.add(mrow, i)), kb.call("llvm.log.f32", s)),
                         scratch, spos)
        with kb.loop(0, length) as r:
            rbase = b.add(base, b.mul(r, i64(inner)))
            with kb.loop(0, inner) as i:
                pos = b.add(rbase, i)
                t = kb.load(scratch, b.add(srow, i))
                if kind == "softmax":
                    kb.store(b.fmul(kb.load(out, pos), t), out, pos)
                else:
                    kb.store(b.fsub(kb.load(x, pos), t), out, pos)
    return kb.finish(outer, length * inner * 12)


#: Pieces a long copy run is cut into, so that threads can share it (bytes per piece at least).
_COPY_PIECE_BYTES = 1 << 16
_COPY_MAX_PIECES = 64
#: A copy whose destination lies 1 to this many bytes above its source modulo the 4 KiB page
#: runs :func:`_copy_loop` instead of ``memcpy``. glibc 2.36's ``memcpy`` moves 2 KiB to about
#: 550 KB with ``rep movsb``, and on the project's AMD EPYC (FSRM) that ran up to 12x slower
#: at those distances (one 128 KiB copy: 44 us at 16 bytes, 4.2 us at 0; 800 KB in 64 KiB
#: pieces: 280-300 us at 4-28 bytes, 34 us otherwise, +15 % at 32-60), while a vector loop
#: runs at one speed whatever the distance. Which distance a copy gets depends only on where
#: the allocator put the arrays (the bench's Concat met it in some processes: 0.32 ms
#: against numpy's 0.06 ms).
_COPY_NEAR_PAGE_DISTANCE = 63
#: Bytes per iteration of :func:`_copy_loop` (four 32-byte vectors).
_COPY_LOOP_STEP = 128


def _copy_loop(module: ir.Module) -> ir.Function:
    """``copy_loop(dst, src, nbytes)``: a forward copy in unaligned 4x32-byte vector moves,
    the last ``nbytes % 128`` bytes by ``memcpy`` (too short for ``rep movsb``). Declared
    once per module, internal."""
    fn = module.globals.get("copy_loop")
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(VOID, [PTR, PTR, I64]), "copy_loop")
    fn.linkage = "internal"
    dst, src, n = fn.args
    for a in (dst, src):
        a.add_attribute("noalias")
    vec = ir.VectorType(I8, 32)
    entry, head, body, tail = (fn.append_basic_block(x) for x in ("e", "h", "b", "t"))
    b = ir.IRBuilder(entry)
    blocks = b.udiv(n, i64(_COPY_LOOP_STEP))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(i64(0), entry)
    b.cbranch(b.icmp_unsigned("<", i, blocks), body, tail)
    b.position_at_end(body)
    base = b.mul(i, i64(_COPY_LOOP_STEP), flags=["nuw"])
    offs = [b.add(base, i64(32 * u), flags=["nuw"]) for u in range(_COPY_LOOP_STEP // 32)]
    vals = [b.load(b.gep(src, [o], inbounds=True, source_etype=I8), typ=vec, align=1)
            for o in offs]
    for o, v in zip(offs, vals):
        b.store(v, b.gep(dst, [o], inbounds=True, source_etype=I8), align=1)
    i.add_incoming(b.add(i, i64(1), flags=["nuw"]), body)
    b.branch(head)
    b.position_at_end(tail)
    done = b.mul(blocks, i64(_COPY_LOOP_STEP), flags=["nuw"])
    memcpy = module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
        module, ir.FunctionType(VOID, [PTR, PTR, I64, I1]), "llvm.memcpy.p0.p0.i64")
    b.call(memcpy, [b.gep(dst, [done], inbounds=True, source_etype=I8),
                    b.gep(src, [done], inbounds=True, source_etype=I8),
                    b.sub(n, done), ir.Constant(I1, 0)])
    b.ret_void()
    return fn


#: Copies at most this long (bytes, known at render time) are plain ``memcpy``: glibc moves
#: them with vector instructions, not ``rep movsb`` (measured equal at every distance).
_COPY_SHORT_BYTES = 2048


def _emit_copy(kb: "KernelBuilder", dst, src, nbytes) -> None:
    """Copy ``nbytes`` (an i64 value) from ``src`` to ``dst``: ``memcpy``, or
    :func:`_copy_loop` when ``dst`` lies 1-63 bytes above ``src`` modulo 4 KiB (see
    ``_COPY_NEAR_PAGE_DISTANCE``). The addresses are only known at the call."""
    b = kb.b
    memcpy = kb.intrinsic("llvm.memcpy.p0.p0.i64", VOID, [PTR, PTR, I64, I1])
    if isinstance(nbytes, ir.Constant) and nbytes.constant <= _COPY_SHORT_BYTES:
        b.call(memcpy, [dst, src, nbytes, ir.Constant(I1, 0)])
        return
    kb._blocks += 1
    n = kb._blocks
    near = kb.fn.append_basic_block(f"n{n}")
    far = kb.fn.append_basic_block(f"m{n}")
    done = kb.fn.append_basic_block(f"d{n}")
    # (dst - src) mod 4096 in [1, 63]  <=>  ((dst - src) mod 4096) - 1 <u 63
    dist = b.and_(b.sub(b.ptrtoint(dst, I64), b.ptrtoint(src, I64)), i64(4095))
    b.cbranch(b.icmp_unsigned("<", b.sub(dist, i64(1)), i64(_COPY_NEAR_PAGE_DISTANCE)),
              near, far)
    b.position_at_end(near)
    b.call(_copy_loop(kb.module), [dst, src, nbytes])
    b.branch(done)
    b.position_at_end(far)
    b.call(memcpy, [dst, src, nbytes, ir.Constant(I1, 0)])
    b.branch(done)
    b.position_at_end(done)


def render_copy_runs(runs, dtype) -> Kernel:
    """Several contiguous runs copied in one call (Concat/Split parts): argument 0 is the
    output, argument ``k + 1`` the source of run ``k``; ``runs`` = (out offset, source offset,
    count) in elements. One kernel call instead of one per part; the runs are cut into pieces
    of at least 64 KiB (at most 64 pieces), the parallel range, so threads share them. Each
    piece is a ``memcpy``, or :func:`_copy_loop` when the buffers' addresses (known only at
    the call) put the destination just above the source modulo 4 KiB."""
    item = np.dtype(dtype).itemsize
    total = sum(c for _, _, c in runs)
    piece = max(_COPY_PIECE_BYTES // item, -(-total // _COPY_MAX_PIECES), 1)
    pieces = []          # (source argument, out offset, source offset, count)
    for k, (ooff, ioff, count) in enumerate(runs):
        for start in range(0, count, piece):
            pieces.append((k + 1, ooff + start, ioff + start, min(piece, count - start)))
    kb = KernelBuilder(1 + len(runs))
    b = kb.b
    ty = LLVM_TYPES[np.dtype(dtype)][0]
    with kb.loop(kb.lo, kb.hi) as p:
        kb._blocks += 1
        after = kb.fn.append_basic_block(f"s{kb._blocks}")
        sw = b.switch(p, after)
        for index, (arg, ooff, ioff, count) in enumerate(pieces):
            case = kb.fn.append_basic_block(f"c{kb._blocks}_{index}")
            sw.add_case(i64(index), case)
            b.position_at_end(case)
            _emit_copy(kb, kb.gep(kb.ptrs[0], i64(ooff), ty), kb.gep(kb.ptrs[arg], i64(ioff), ty),
                       i64(count * item))
            b.branch(after)
        b.position_at_end(after)
    # Work is counted in bytes moved (read and written): a memcpy streams whole pieces at
    # the memory bandwidth, several times the element rate of a computed loop, and a copy
    # of a megabyte or more runs faster on two cores (each adds its own cache bandwidth).
    return kb.finish(max(1, len(pieces)), 2 * piece * item)


def render_rows(kind: str, rows: int, length: int, eps: float = 0.0) -> Kernel:
    """Row-wise kernels over a contiguous ``(rows, length)`` view, parallel over rows.

    ``kind``: ``softmax``/``logsoftmax`` (out, x), ``mean``/``sum``/``max`` (out (rows,), x),
    ``layernorm`` (out, x, scale (length,), bias (length,)).
    """
    n_ptrs = {"softmax": 2, "logsoftmax": 2, "mean": 2, "sum": 2, "max": 2, "layernorm": 4}[kind]
    kb = KernelBuilder(n_ptrs)
    math = MathLib(kb)
    b = kb.b
    out, x = kb.ptrs[0], kb.ptrs[1]
    acc = kb.alloca(F32)
    acc2 = kb.alloca(F32)
    with kb.loop(kb.lo, kb.hi) as r:
        base = b.mul(r, i64(length), flags=["nsw"])

        def reduce(init, step):
            b.store(f32(init), acc)
            with kb.loop(0, length) as j:
                v = kb.load(x, b.add(base, j))
                b.store(step(b.load(acc), v, j), acc)
            return b.load(acc)

        fadd = lambda a, v: b.fadd(a, v, flags=FAST)  # noqa: E731
        if kind in ("mean", "sum", "max"):
            if kind == "max":
                res = reduce(float("-inf"), lambda a, v, j: kb.b.call(
                    kb.intrinsic("llvm.maxnum.f32", F32, [F32, F32]), [a, v], fastmath=FAST))
            else:
                res = reduce(0.0, lambda a, v, j: fadd(a, v))
                if kind == "mean":
                    res = b.fmul(res, f32(1.0 / length))
            kb.store(res, out, r)
        elif kind in ("softmax", "logsoftmax"):
            m = reduce(float("-inf"), lambda a, v, j: kb.b.call(
                kb.intrinsic("llvm.maxnum.f32", F32, [F32, F32]), [a, v], fastmath=FAST))
            b.store(f32(0.0), acc2)
            with kb.loop(0, length) as j:
                pos = b.add(base, j)
                e = math.exp(b.fsub(kb.load(x, pos), m))
                if kind == "softmax":
                    kb.store(e, out, pos)
                b.store(fadd(b.load(acc2), e), acc2)
            s = b.load(acc2)
            if kind == "softmax":
                inv = b.fdiv(f32(1.0), s)
                with kb.loop(0, length) as j:
                    pos = b.add(base, j)
                    kb.store(b.fmul(kb.load(out, pos), inv), out, pos)
            else:
                lse = b.fadd(m, kb.call("llvm.log.f32", s))
                with kb.loop(0, length) as j:
                    pos = b.add(base, j)
                    kb.store(b.fsub(kb.load(x, pos), lse), out, pos)
        else:   # layernorm
            mean = b.fmul(reduce(0.0, lambda a, v, j: fadd(a, v)), f32(1.0 / length))
            var = reduce(0.0, lambda a, v, j: fadd(a, b.fmul(b.fsub(v, mean), b.fsub(v, mean))))
            var = b.fmul(var, f32(1.0 / length))
            inv = b.fdiv(f32(1.0), kb.call("llvm.sqrt.f32", b.fadd(var, f32(eps))))
            with kb.loop(0, length) as j:
                pos = b.add(base, j)
                y = b.fmul(b.fsub(kb.load(x, pos), mean), inv)
                y = math.fma(y, kb.load(kb.ptrs[2], j), kb.load(kb.ptrs[3], j))
                kb.store(y, out, pos)
    return kb.finish(rows, length * (1 if kind in ("mean", "sum", "max") else 12))
