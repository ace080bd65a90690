"""Reusable reference programs: a tiled, double-buffered GEMM and small conformance kernels.

The programs are built with :class:`~pyvta.compiler.builder.ProgramBuilder` and come with exact
numpy references, so every target (functional simulator, RTL simulator, board) can run them and
be checked against the same answer.

The tiled GEMM (:func:`gemm_program`) computes ``out = clip((A @ W.T + bias) >> shift)`` as int8
for any preset and any ``M, K, N``:

* Operands are stored in DRAM in VTA's tiled layouts (:func:`pack_inp`, :func:`pack_wgt`);
  dimensions that are not multiples of the block sizes are zero-padded.
* The work is split into output tiles of ``mt x nt`` accumulator elements, each reduced over
  chunks of ``kc`` input blocks; one GEMM instruction covers a whole (tile, chunk) "step", so the
  micro-op loop runs ``mt * nt * kc`` iterations per instruction.
* With ``threads=2`` (VTA's two virtual threads) the INP/WGT buffers are split in two slots used
  by alternate steps, and the ACC buffer in two slots used by alternate output tiles. Dependency
  tokens let the load module fill one slot while the compute module works on the other, and let
  the compute module start the next tile while the store module drains the previous one.
* Inside each GEMM the innermost micro-ops walk different accumulator elements (output columns,
  and up to three rows when there are fewer than three columns), so a micro-op's destination
  usually differs from the previous two (VTA's pipeline rule, which pyvta's compute module,
  with its write-stage bypass, does not need: see ``_group``).
* Tile sizes are chosen by a small event model of the three modules (load, compute, store) that
  counts DMA bytes on the configured AXI width; pass ``tile=(mt, nt, kc)`` to force them.
* When the whole input matrix fits the INP buffer and the whole weight matrix the WGT buffer
  (with two threads), the "resident" schedule of ``sim/gemm_resident.py`` loads each operand
  once and streams the reduction of a top block column by column; ``tile=None`` builds both
  and keeps the one the timing model (``sim.timing``) finds faster, ``tile="resident"`` or
  ``tile="tiled"`` forces one.

Compute passes per output tile: one reset (GEMM ``reset_reg``) plus one ALU pass per requested
operation (SHR, MIN, MAX); each pass visits every accumulator element of the tile once. A bias
is folded into the GEMM as one extra reduction block when its values allow (``bias_mode``), so
it costs one micro-op per output element rather than an ALU pass with a tensor operand (which
a one-read-port accumulator needs two cycles for).

With ``threads=2`` each ACC slot is one ACC/OUT bank of the two-lane compute module (slot h
uses ``[h*D/2, (h+1)*D/2)``, its bias inside it), and the stream places the next tile's reset
before this tile's ALU epilogue: the reset runs in the ALU lane during this tile's GEMMs and
the epilogue during the next tile's GEMMs (docs: the lanes spec's scheduling rule). With
``threads=1`` the passes run after the GEMMs of the same ACC region. :attr:`GemmTiling.est_cycles`
gives the event model's estimate for the chosen tiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from ..compiler.builder import ProgramBuilder
from ..hw.config import HwConfig, load_config
from ..hw.isa import LOOP_ITER_WIDTH, AluOp, MemInsn, MemType, Opcode, Uop, encode_uops
from .dram import Dram
from . import gemm_resident
from .gemm_plan import _ceil_div, _choose_tiling, _estimate, _plan, kernel_table

__all__ = ["ProgramError", "GemmTiling", "GemmProgram", "gemm_program", "numpy_reference",
           "pack_inp", "pack_wgt", "pack_acc_rows", "unpack_out", "alu_program",
           "alu_reference", "padded_load_program", "padded_load_reference",
           "conformance_suite", "PHASES", "phase_program"]


class ProgramError(ValueError):
    """The arguments of a reference program are invalid (shape, dtype, range, tile size)."""


# ------------------------------------------------------------------------------------------------
# Tiled layouts
# ------------------------------------------------------------------------------------------------

def _check_matrix(name: str, x, dtype=np.int8) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ProgramError(f"{name} must be a 2-D matrix, not an array of shape {x.shape}")
    if x.dtype != dtype:
        raise ProgramError(f"{name} must have dtype {np.dtype(dtype).name}, not {x.dtype.name}")
    if 0 in x.shape:
        raise ProgramError(f"{name} must not be empty, not of shape {x.shape}")
    return x


def pack_inp(cfg: HwConfig, a: np.ndarray) -> np.ndarray:
    """(M, K) int8 -> INP elements ``(ceil(M/BATCH), ceil(K/BLOCK_IN), BATCH, BLOCK_IN)``.

    Element ``(mb, kb)`` holds rows ``mb*BATCH ..`` and columns ``kb*BLOCK_IN ..``; the padding
    is zero.
    """
    m, k = a.shape
    mb, kb = _ceil_div(m, cfg.batch), _ceil_div(k, cfg.block_in)
    padded = np.zeros((mb * cfg.batch, kb * cfg.block_in), np.int8)
    padded[:m, :k] = a
    return padded.reshape(mb, cfg.batch, kb, cfg.block_in).transpose(0, 2, 1, 3).copy()


def pack_wgt(cfg: HwConfig, w: np.ndarray) -> np.ndarray:
    """(N, K) int8 -> WGT elements ``(ceil(N/BLOCK_OUT), ceil(K/BLOCK_IN), BLOCK_OUT, BLOCK_IN)``."""
    n, k = w.shape
    nb, kb = _ceil_div(n, cfg.block_out), _ceil_div(k, cfg.block_in)
    padded = np.zeros((nb * cfg.block_out, kb * cfg.block_in), np.int8)
    padded[:n, :k] = w
    return padded.reshape(nb, cfg.block_out, kb, cfg.block_in).transpose(0, 2, 1, 3).copy()


def pack_acc_rows(cfg: HwConfig, v: np.ndarray) -> np.ndarray:
    """(N,) int32 -> ACC elements ``(ceil(N/BLOCK_OUT), BATCH, BLOCK_OUT)``, each row a copy."""
    n = v.shape[0]
    nb = _ceil_div(n, cfg.block_out)
    padded = np.zeros(nb * cfg.block_out, np.int32)
    padded[:n] = v
    return np.broadcast_to(padded.reshape(nb, 1, cfg.block_out),
                           (nb, cfg.batch, cfg.block_out)).copy()


def unpack_out(cfg: HwConfig, tiles: np.ndarray, m: int, n: int) -> np.ndarray:
    """OUT elements ``(MB, NB, BATCH, BLOCK_OUT)`` (or flat) -> the (m, n) int8 matrix."""
    mb, nb = _ceil_div(m, cfg.batch), _ceil_div(n, cfg.block_out)
    t = np.asarray(tiles).reshape(mb, nb, cfg.batch, cfg.block_out)
    return t.transpose(0, 2, 1, 3).reshape(mb * cfg.batch, nb * cfg.block_out)[:m, :n].copy()


def numpy_reference(a: np.ndarray, w: np.ndarray, bias=None, shift: int = 0,
                    clip=(-128, 127)) -> np.ndarray:
    """The exact answer of :func:`gemm_program`: int8 ``clip((a @ w.T + bias) >> shift)``.

    Arithmetic is int32 with wrap-around, the shift is arithmetic (floor), and without ``clip``
    the result is the low byte of the int32 value, as the hardware stores it.
    """
    acc = a.astype(np.int64) @ w.astype(np.int64).T
    acc = acc.astype(np.int32).astype(np.int64)  # wrap-around to int32
    if bias is not None:
        acc = (acc + np.asarray(bias, np.int64)[None, :]).astype(np.int32).astype(np.int64)
    acc >>= shift
    if clip is not None:
        acc = np.clip(acc, clip[0], clip[1])
    return acc.astype(np.int32).astype(np.int8)


# ------------------------------------------------------------------------------------------------
# The tiled GEMM
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GemmTiling:
    """How :func:`gemm_program` cut the problem, and what its event model expects.

    ``mt``, ``nt``, ``kc`` are in elements (BATCH rows, BLOCK_OUT columns, BLOCK_IN columns).
    ``order`` is ``"nm"`` (output-column tiles outer, weights stay loaded across row tiles) or
    ``"mn"`` (row tiles outer), or ``"resident"`` for the resident schedule (``mt``: its top
    block's rows). ``est_cycles`` is the model's whole-program estimate and
    ``ideal_cycles`` the GEMM work at one micro-op per cycle.
    """
    mt: int
    nt: int
    kc: int
    order: str
    threads: int
    est_cycles: int = 0
    ideal_cycles: int = 0
    load_bytes: int = 0

    @property
    def est_efficiency(self) -> float:
        return self.ideal_cycles / self.est_cycles if self.est_cycles else 0.0


@dataclass
class GemmProgram:
    """A built tiled GEMM: the builder (instructions + DRAM) and where the result lands."""
    builder: ProgramBuilder
    cfg: HwConfig
    m: int
    k: int
    n: int
    out_elem: int
    tiling: GemmTiling
    #: Physical byte ranges ``(addr, nbytes)`` the program writes (the OUT matrix).
    written: list = field(default_factory=list)
    #: Reduction blocks the accelerator runs (including a folded bias block).
    k_blocks: int = 0

    @property
    def dram(self) -> Dram:
        return self.builder.dram

    @property
    def insns(self) -> list:
        return self.builder.insns

    def encode(self) -> bytes:
        """The instruction stream (16 bytes per instruction)."""
        return self.builder.encode()

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the padded problem the accelerator performs."""
        c = self.cfg
        kb = self.k_blocks or _ceil_div(self.k, c.block_in)
        return _ceil_div(self.m, c.batch) * _ceil_div(self.n, c.block_out) * kb \
            * c.macs_per_cycle

    def read_output(self, dram: Dram | bytes | None = None) -> np.ndarray:
        """The (M, N) int8 result from ``dram`` (default: the builder's image after a run).

        ``dram`` may also be the raw bytes of an image written back by ``pyvta sim run``.
        """
        c = self.cfg
        mb, nb = _ceil_div(self.m, c.batch), _ceil_div(self.n, c.block_out)
        if dram is None:
            dram = self.builder.dram
        elif not isinstance(dram, Dram):
            dram = Dram(base=self.builder.dram.base, data=dram)
        raw = dram.read(self.out_elem * c.out_elem_bytes, mb * nb * c.out_elem_bytes)
        return unpack_out(c, raw.view(np.int8), self.m, self.n)


def _bias_digits(cfg: HwConfig, bias: np.ndarray):
    """int8 weights ``d`` (N, BLOCK_IN) with ``d[:, 0] + 127 * d[:, 1:].sum(1) == bias``, or
    None when a bias is out of reach. Paired with an input block ``[1, 127, ..., 127]``."""
    b = bias.astype(np.int64)
    cols = cfg.block_in - 1
    low = (b + 63) % 127 - 63                      # in [-63, 63], b - low divisible by 127
    rest = (b - low) // 127
    if rest.max() > 127 * cols or rest.min() < -128 * cols:
        return None
    digits = np.zeros((b.size, cfg.block_in), np.int64)
    digits[:, 0] = low
    for c in range(1, cfg.block_in):
        digits[:, c] = np.clip(rest, -128, 127)
        rest = rest - digits[:, c]
    return digits.astype(np.int8)


def _group(mt: int, nt: int) -> int:
    """Rows per micro-op group: the smallest divisor ``g <= 3`` of ``mt`` with
    ``g * nt >= 3`` (VTA's rule that a micro-op's destination differs from the previous
    two), else 1: pyvta's compute module bypasses its write stage and does not need the
    rule, and a long kernel costs micro-op buffer space and scanner cycles."""
    for g in range(1, min(mt, 3) + 1):
        if mt % g == 0 and g * nt >= 3:
            return g
    return 1


def gemm_program(cfg, a, w, bias=None, shift: int = 0, clip=(-128, 127), threads: int = 2,
                 tile=None, dram: Dram | None = None, bias_mode: str = "auto") -> GemmProgram:
    """Build a tiled int8 GEMM ``clip((a @ w.T + bias) >> shift)`` for configuration ``cfg``.

    Parameters
    ----------
    cfg : HwConfig or str
        Configuration or preset name.
    a : ndarray, int8, shape (M, K)
        Input rows.
    w : ndarray, int8, shape (N, K)
        Weights, one row per output column.
    bias : ndarray, int32, shape (N,), optional
        Added to the accumulator before the shift.
    shift : int
        Arithmetic right shift in ``[0, 31]``.
    clip : (lo, hi) or None
        Saturation bounds within ``[-128, 127]``; ``None`` stores the low byte unclipped.
    threads : 1 or 2
        Virtual threads: 2 double-buffers every on-chip buffer and overlaps load, compute and
        store with dependency tokens; 1 runs them one after the other.
    tile : "resident", "tiled" or (mt, nt, kc[, order[, wgt_resident[, inp_resident[, ramp[, split_last]]]]]), optional
        ``None`` (default): the faster of the resident schedule (where it applies) and the
        tiled plan, by the timing model. ``"resident"``: the resident schedule (an error if
        the operands do not fit on chip whole). ``"tiled"``: the tiled plan's search. A tuple:
        force the tile size in elements (rows of BATCH, columns of BLOCK_OUT, BLOCK_IN),
        optionally the tile order (``"nm"``: column tiles outer, ``"mn"``: row tiles outer)
        and whether every weight (input) chunk keeps its own place in the WGT (INP) buffer
        (loaded once; needs the whole matrix to fit), whether the K chunks start with 1 and
        2 blocks (a short first load) and whether the last tile is cut in two (a short
        tail with two threads).
    dram : Dram, optional
        The image to place operands in (default: a new one just large enough).
    bias_mode : "auto", "gemm" or "alu"
        ``"gemm"`` folds the bias into the GEMM as one extra reduction block (inputs get a
        constant block ``[1, 127, ..., 127]``, weights the bias's digits), which costs one
        micro-op per output element instead of an ALU ADD pass with a tensor operand; it needs
        ``|bias|`` below about ``127 * 127 * (BLOCK_IN - 1)``. ``"alu"`` loads the bias into ACC
        and adds it after the reset. ``"auto"`` folds when the bias fits.

    Returns
    -------
    GemmProgram
        Run ``prog.encode()`` against ``prog.dram`` and read the answer with
        ``prog.read_output()``; compare with :func:`numpy_reference`.
    """
    cfg = load_config(cfg)
    a = _check_matrix("a", a)
    w = _check_matrix("w", w)
    m, k = a.shape
    n = w.shape[0]
    if w.shape[1] != k:
        raise ProgramError(f"w must have K={k} columns like a, not {w.shape[1]}")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (n,) or bias.dtype != np.int32:
            raise ProgramError(f"bias must be an int32 vector of shape ({n},), not "
                               f"{bias.dtype.name} of shape {bias.shape}")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) \
            or not 0 <= shift <= 31:
        raise ProgramError(f"shift must be an integer in [0, 31], not {shift!r}")
    if clip is not None:
        lo, hi = clip
        if not -128 <= lo <= hi <= 127:
            raise ProgramError(f"clip must be (lo, hi) with -128 <= lo <= hi <= 127, "
                               f"not {clip!r}")
    if threads not in (1, 2):
        raise ProgramError(f"threads must be 1 or 2, not {threads!r}")
    if bias_mode not in ("auto", "gemm", "alu"):
        raise ProgramError(f"bias_mode must be 'auto', 'gemm' or 'alu', not {bias_mode!r}")
    if tile is None:
        return _best_of(cfg, (a, w, bias, shift, clip, threads), dram, bias_mode)
    k_user = k
    if bias is not None and bias_mode != "alu":
        digits = _bias_digits(cfg, bias)
        if digits is None and bias_mode == "gemm":
            raise ProgramError(
                f"bias values in [{int(bias.min())}, {int(bias.max())}] do not fit one GEMM "
                f"block at BLOCK_IN={cfg.block_in}; use bias_mode='alu'")
        if digits is not None:
            # One extra reduction block: a @ w.T + bias == [a | e] @ [w | digits].T.
            kpad = _ceil_div(k, cfg.block_in) * cfg.block_in
            a2 = np.zeros((m, kpad + cfg.block_in), np.int8)
            a2[:, :k], a2[:, kpad], a2[:, kpad + 1:] = a, 1, 127
            w2 = np.zeros((n, kpad + cfg.block_in), np.int8)
            w2[:, :k], w2[:, kpad:] = w, digits
            a, w, k, bias = a2, w2, kpad + cfg.block_in, None
    slots = threads
    mb, kb, nb = _ceil_div(m, cfg.batch), _ceil_div(k, cfg.block_in), _ceil_div(n, cfg.block_out)
    inp_cap, wgt_cap = cfg.inp_depth // slots, cfg.wgt_depth // slots
    acc_cap = cfg.acc_depth // slots
    uop_cap = cfg.uop_depth
    alu_ops = []
    if bias is not None:
        alu_ops.append(None)  # the bias ADD is issued right after the reset
    if shift:
        alu_ops.append((AluOp.SHR, int(shift)))
    if clip is not None:
        alu_ops += [(AluOp.MIN, int(clip[1])), (AluOp.MAX, int(clip[0]))]
    post_ops = [op for op in alu_ops if op is not None]

    if isinstance(tile, str) and tile == "resident":
        if not gemm_resident.fits(cfg, mb, nb, kb, bias is not None, threads):
            raise ProgramError("the resident schedule needs two threads, the whole input "
                               "matrix in INP, the whole weight matrix in WGT and a "
                               "full-width output row in a quarter of ACC")
        try:
            return _resident_program(cfg, a, w, bias, k_user, post_ops, dram, mb, nb, kb)
        except gemm_resident.DoesNotFit as e:
            raise ProgramError(str(e)) from None
    if isinstance(tile, str) and tile == "tiled":
        tile = None
    elif isinstance(tile, str):
        raise ProgramError(f"tile must be None, 'resident', 'tiled' or (mt, nt, kc, ...), "
                           f"not {tile!r}")
    if tile is None:
        chosen = _choose_tiling(cfg, mb, nb, kb, slots, len(post_ops), bias is not None,
                                (inp_cap, wgt_cap, acc_cap, uop_cap, cfg.wgt_depth,
                                 cfg.inp_depth))
        if chosen is None:
            raise ProgramError(f"no GEMM tiling fits the buffers of configuration "
                               f"{cfg.fingerprint}")
        mt, nt, kc, order, wgt_resident, inp_resident, ramp, split_last = chosen
    else:
        order, wgt_resident, inp_resident, ramp, split_last = "nm", False, False, False, False
        if isinstance(tile, (tuple, list)) and len(tile) == 8:
            *tile, split_last = tile
        if isinstance(tile, (tuple, list)) and len(tile) == 7:
            *tile, ramp = tile
        if isinstance(tile, (tuple, list)) and len(tile) == 6:
            *tile, inp_resident = tile
            if inp_resident and mb * kb > cfg.inp_depth:
                raise ProgramError(f"resident inputs need {mb * kb} INP elements, more than "
                                   f"the {cfg.inp_depth} the buffer holds")
        if isinstance(tile, (tuple, list)) and len(tile) == 5:
            *tile, wgt_resident = tile
            if wgt_resident and nb * kb > cfg.wgt_depth:
                raise ProgramError(f"resident weights need {nb * kb} WGT elements, more than "
                                   f"the {cfg.wgt_depth} the buffer holds")
        if isinstance(tile, (tuple, list)) and len(tile) == 4:
            *tile, order = tile
            if order not in ("nm", "mn"):
                raise ProgramError(f"tile order must be 'nm' or 'mn', not {order!r}")
        try:
            mt, nt, kc = (int(v) for v in tile)
        except (TypeError, ValueError):
            raise ProgramError(f"tile must be three integers (mt, nt, kc), not {tile!r}") from None
        for name, v in (("mt", mt), ("nt", nt), ("kc", kc)):
            if v < 1:
                raise ProgramError(f"tile {name} must be at least 1, not {v}")
        mt, nt, kc = min(mt, mb), min(nt, nb), min(kc, kb)
        if mt * kc > inp_cap and not inp_resident:
            raise ProgramError(f"tile mt*kc={mt * kc} INP elements exceeds the {inp_cap} "
                               f"available per thread")
        if nt * kc > wgt_cap and not wgt_resident:
            raise ProgramError(f"tile nt*kc={nt * kc} WGT elements exceeds the {wgt_cap} "
                               f"available per thread")
        if mt * nt + (nt if bias is not None else 0) > acc_cap:
            raise ProgramError(f"tile mt*nt={mt * nt} ACC elements (plus bias) exceeds the "
                               f"{acc_cap} available per thread")
    if kb > (1 << 16) - 1 or nb > (1 << 16) - 1:
        raise ProgramError(f"K or N is too large: the DRAM row pitch ({max(kb, nb)} elements) "
                           f"must fit the 16-bit x_stride field")
    if _ceil_div(mt, _group(mt, nt)) >= 1 << LOOP_ITER_WIDTH:
        raise ProgramError(f"tile of {mt} rows exceeds the {LOOP_ITER_WIDTH}-bit loop extent")

    tiles, steps = _plan(mb, nb, kb, mt, nt, kc, order, slots, wgt_resident, inp_resident,
                         ramp, split_last)
    for flag, mem, depth, used in (
            (inp_resident, "INP", cfg.inp_depth, max(st.inp_off + st.m[1] * st.k[1]
                                                     for st in steps)),
            (wgt_resident, "WGT", cfg.wgt_depth, max(st.wgt_off + st.n[1] * st.k[1]
                                                     for st in steps))):
        if flag and used > depth:
            raise ProgramError(f"resident {mem} chunks need {used} elements, more than the "
                               f"{depth} the buffer holds")
    est, load_bytes = _estimate(cfg, steps, len(tiles), slots, len(post_ops), bias is not None)
    # The ideal is the user's GEMM alone (a folded bias block is overhead, not work).
    ideal = mb * nb * _ceil_div(k_user, cfg.block_in)
    tiling = GemmTiling(mt, nt, kc, order, threads, est, ideal, load_bytes)

    # --- DRAM image ---------------------------------------------------------------------------
    b, own_dram, a_elem, w_elem, bias_elem, out_elem = _place_operands(cfg, a, w, bias, dram,
                                                                       mb, nb)

    # --- micro-op kernels (all loaded once, at the start) -------------------------------------
    inp_base = [s * inp_cap for s in range(slots)]
    wgt_base = [s * wgt_cap for s in range(slots)]
    acc_base = [s * acc_cap for s in range(slots)]
    # The whole bias stays in each slot (one LOAD ACC per slot, at its first tile) when it fits
    # beside the tile: a LOAD ACC waits for both compute lanes to empty, so reloading it per
    # tile would stop the ALU epilogues from overlapping the GEMMs.
    resident_bias = bias is not None and mt * nt + nb <= acc_cap
    bias_base = [acc_base[s] + (acc_cap - nb if resident_bias else mt * nt)
                 for s in range(slots)]
    uops: list[Uop] = []
    kernel = kernel_table(uops)

    def gemm_kernel(isram, as_, g, nt_, kc_, wsram, row0=0, k0=0):
        return kernel(("gemm", isram, as_, g, nt_, kc_, wsram, row0, k0), lambda: [
            Uop(acc_base[as_] + (row0 + r) * nt_ + j, isram + (row0 + r) * kc_ + k0,
                wsram + j * kc_ + k0)
            for r in range(g) for j in range(nt_)])

    def reset_kernel(as_):
        return kernel(("reset", as_), lambda: [Uop(acc_base[as_], 0, 0)])

    def alu_kernel(as_, n0=0):
        # Without a bias the source index is unused (immediate operands): keep it in range.
        src = bias_base[as_] + n0 if bias is not None else acc_base[as_]
        return kernel(("alu", as_, src), lambda: [Uop(acc_base[as_], src, 0)])

    # --- instructions ---------------------------------------------------------------------------
    body = ProgramBuilder(cfg, b.dram)  # collects the instructions; DRAM is shared with ``b``
    held_bias = [None] * slots

    def prologue(t):
        """Tile ``t``'s ACC initialisation: [bias load], reset, [bias ADD]; the first
        instruction waits for the store of the slot's previous tile (store -> compute)."""
        (_, mt_), (n0, nt_) = tiles[t]
        as_ = t % slots
        out = []
        if resident_bias and held_bias[as_] is None:
            # Every slot's copy at the start: a LOAD ACC later would wait for both lanes
            # to empty.
            for sl in range(slots):
                out.append(("load_bias", dict(sram=bias_base[sl], dram=bias_elem, x=nb), {}))
                held_bias[sl] = "all"
        elif bias is not None and not resident_bias and held_bias[as_] != tiles[t][1]:
            out.append(("load_bias", dict(sram=bias_base[as_], dram=bias_elem + n0, x=nt_), {}))
            held_bias[as_] = tiles[t][1]
        out.append(("gemm", dict(uops=reset_kernel(as_), iter_out=mt_, iter_in=nt_,
                                 dst=(nt_, 1), reset=True), {}))
        if bias is not None and not bias_late(t):
            out.append(bias_add(t))
        out[0][2]["pop_next_dep"] = t >= slots
        return out

    def bias_late(t):
        # With two lanes the first tile's GEMMs would wait for its bias ADD (same bank, and
        # nothing runs before it to hide it): it adds the bias after its GEMMs instead (the
        # same int32 sum), where the ADD overlaps the next tile's GEMMs.
        return slots == 2 and t == 0 and len(tiles) > 1

    def bias_add(t):
        (_, mt_), (n0, nt_) = tiles[t]
        kern = alu_kernel(t % slots, n0 if resident_bias else 0)
        return ("alu", dict(op=AluOp.ADD, uops=kern, iter_out=mt_, iter_in=nt_, dst=(nt_, 1),
                            src=(0, 1)), {})

    # Instruction groups per step: its loads, then its compute and stores. Loads of later
    # steps are placed ahead of a step's compute (``lookahead`` steps when nothing they
    # overwrite is in use, else one) so the in-order fetch stage does not hold them back
    # behind compute instructions; the load->compute tokens in flight stay below the token
    # queue's depth.
    lookahead = max(1, min(4, cfg.dep_queue_depth - 2))
    load_groups, comp_groups = [], []
    carry = []        # the previous tile's ALU passes, placed inside this tile's GEMMs
    carry_need = 0    # GEMM cycles still to place before them
    carry_tile = None
    for s, st in enumerate(steps):
        ls, as_ = s % slots, st.tile % slots
        (m0, mt_), (n0, nt_), (k0, kc_) = st.m, st.n, st.k
        loads = st.load_inp or st.load_wgt
        wsram = st.wgt_off if wgt_resident else wgt_base[ls]
        isram = st.inp_off if inp_resident else inp_base[ls]
        # Load module: wait until the slot's previous reader is done, load, signal compute.
        pending = []
        if st.load_inp:
            pending.append((MemType.INP, isram, a_elem + m0 * kb + k0, mt_))
        if st.load_wgt:
            pending.append((MemType.WGT, wsram, w_elem + n0 * kb + k0, nt_))
        load_groups.append([
            (mem, sram, dram_elem, rows, kc_, dict(pop_next_dep=(i == 0 and st.pop_c2l),
                                                   push_next_dep=(i == len(pending) - 1)))
            for i, (mem, sram, dram_elem, rows) in enumerate(pending)])
        # Compute module: (kind, kwargs, token flags) in program order.
        compute = []
        stores = []

        def place_carry():
            nonlocal carry, carry_tile
            compute.extend(carry)
            stores.append(carry_tile)
            carry, carry_tile = [], None

        if st.first and (slots == 1 or st.tile == 0):
            compute += prologue(st.tile)
        g = _group(mt_, nt_)
        outer = mt_ // g
        # The main GEMM, cut in two (over its K blocks, else its row groups) where the
        # previous tile's ALU passes go (see ``carry``).
        parts = [(0, outer, 0, kc_)]  # (row group from, to, K block from, to)
        work = mt_ * nt_ * kc_
        if carry and work > carry_need:
            if kc_ > 1 and _ceil_div(carry_need, mt_ * nt_) < kc_:
                cut = max(1, _ceil_div(carry_need, mt_ * nt_))
                parts = [(0, outer, 0, cut), (0, outer, cut, kc_)]
            elif outer > 1 and _ceil_div(carry_need, g * nt_ * kc_) < outer:
                cut = max(1, _ceil_div(carry_need, g * nt_ * kc_))
                parts = [(0, cut, 0, kc_), (cut, outer, 0, kc_)]
        for p_i, (r0, r1, c0, c1) in enumerate(parts):
            n_out = r1 - r0
            compute.append(("gemm", dict(
                uops=gemm_kernel(isram, as_, g, nt_, kc_, wsram, r0 * g, c0), iter_out=n_out,
                iter_in=c1 - c0, dst=(g * nt_ if n_out > 1 else 0, 0),
                src=(g * kc_ if n_out > 1 else 0, 1), wgt=(0, 1)),
                dict(pop_prev_dep=(p_i == 0 and loads),                  # data loaded
                     push_prev_dep=(p_i == len(parts) - 1 and st.push_c2l))))  # slot free
            if carry:
                carry_need -= n_out * g * nt_ * (c1 - c0)
                if carry_need <= 0 or len(parts) == 2:
                    place_carry()
        if st.last:
            epilogue = [("alu", dict(op=op, uops=alu_kernel(as_), iter_out=mt_, iter_in=nt_,
                                     dst=(nt_, 1), imm=imm), {}) for op, imm in post_ops]
            if bias is not None and bias_late(st.tile):
                epilogue.insert(0, bias_add(st.tile))
            # The result is ready after the tile's last instruction (its GEMM without ALU
            # passes): compute -> store token.
            (epilogue or compute)[-1][2]["push_next_dep"] = True
            if carry:
                place_carry()  # the previous tile's passes go before this tile's
            if slots == 2 and st.tile + 1 < len(tiles):
                # Two lanes: the next tile's reset (other ACC bank) goes first so it runs in
                # lane A while this tile's GEMM runs in lane G. The ALU passes wait for this
                # tile's GEMM to drain (same bank); they are placed after the next tile's
                # first GEMM instructions, which then wait in lane G's next register and
                # start as soon as this tile's GEMM has issued. Lane A holds two passes
                # (executing and next), so the GEMM instruction after the passes dispatches
                # once all but two of them ran: the GEMMs before the passes must last that
                # long.
                compute += prologue(st.tile + 1)
                if epilogue:
                    carry, epilogue, carry_tile = epilogue, [], st.tile
                    carry_need = mt_ * nt_ * max(0, len(carry) - 2) + 24
            compute += epilogue
            if not carry:
                stores.append(st.tile)
        comp_groups.append((compute, stores))
    if carry:  # cannot happen (the last tile has no successor), kept for safety
        comp_groups[-1][0].extend(carry)
        comp_groups[-1][1].append(carry_tile)

    # Emission: loads of step u before the compute of step u - lookahead (u - 1 when they
    # wait for a slot: the token they pop is pushed by step u - slots), in step order.
    emitted = 0
    for s, (compute, stores) in enumerate(comp_groups):
        while emitted < len(steps) and (emitted <= s or (
                emitted <= s + lookahead and not steps[emitted].pop_c2l)):
            for mem, sram, dram_elem, rows, x, flags in load_groups[emitted]:
                body.load(mem, sram, dram_elem, rows, x, kb, **flags)
            emitted += 1
        for kind, kw, flags in compute:
            if kind == "load_bias":
                body.load(MemType.ACC, kw["sram"], kw["dram"], 1, kw["x"], **flags)
            elif kind == "gemm":
                body.gemm(**kw, **flags)
            else:
                body.alu(**kw, **flags)
        for t in stores:
            (tm0, tmt), (tn0, tnt) = tiles[t]
            # A tile as wide as the matrix is one contiguous run in DRAM (and in OUT): one
            # long row streams at full bus rate, where many short rows are bound by the write
            # responses.
            rows, cols = (1, tmt * tnt) if tnt == nb else (tmt, tnt)
            body.store(acc_base[t % slots], out_elem + tm0 * nb + tn0, rows, cols,
                       cols if rows == 1 else nb, pop_prev_dep=True,
                       push_prev_dep=(t + slots < len(tiles) or t == len(tiles) - 1))
    body.sync("compute", pop_next_dep=True)  # the last store has drained
    body.finish()

    _load_uops_first(cfg, b, body, uops, own_dram)
    written = [(out_elem * cfg.out_elem_bytes, mb * nb * cfg.out_elem_bytes)]
    return GemmProgram(b, cfg, m, k_user, n, out_elem, tiling, written, k_blocks=kb)


def _best_of(cfg, args, dram, bias_mode) -> GemmProgram:
    """``gemm_program`` with ``tile=None``: the tiled search's plan, or the resident schedule
    when it applies and the timing model (``sim.timing``) says it is faster. Both are built
    in their own images; the winner is rebuilt in ``dram`` when one is given."""
    a, w, bias, shift, clip, threads = args
    best = gemm_program(cfg, a, w, bias, shift, clip, threads, "tiled", None, bias_mode)
    kb = best.k_blocks
    mb, nb = _ceil_div(best.m, cfg.batch), _ceil_div(best.n, cfg.block_out)
    alu_bias = bias is not None and kb == _ceil_div(best.k, cfg.block_in)
    if gemm_resident.fits(cfg, mb, nb, kb, alu_bias, threads):
        try:
            res = gemm_program(cfg, a, w, bias, shift, clip, threads, "resident", None,
                               bias_mode)
        except ProgramError:      # the layout does not fit after all: stay tiled
            res = None
        # Both measured by the same (calibrated) timing model.
        if res is not None and res.tiling.est_cycles < _program_cycles(cfg, best.builder):
            best = res
    if dram is None:
        return best
    mode = "resident" if best.tiling.order == "resident" else "tiled"
    return gemm_program(cfg, a, w, bias, shift, clip, threads, mode, dram, bias_mode)


def _program_cycles(cfg, builder) -> int:
    """The timing model's cycles for a built program (its DRAM image holds the micro-ops)."""
    from .timing import estimate_cycles
    return estimate_cycles(cfg, builder.encode(), dram=builder.dram).cycles


def _resident_program(cfg, a, w, bias, k_user, post_ops, dram, mb, nb, kb) -> GemmProgram:
    """Build the resident schedule (see ``sim/gemm_resident.py``)."""
    m, n = a.shape[0], w.shape[0]
    b, own_dram, a_elem, w_elem, bias_elem, out_elem = _place_operands(cfg, a, w, bias, dram,
                                                                       mb, nb)
    rows = gemm_resident.plan_rows(mb)
    body = ProgramBuilder(cfg, b.dram)
    uops: list[Uop] = []
    gemm_resident.build(cfg, body, uops, mb=mb, nb=nb, kb=kb, rows=rows, a_elem=a_elem,
                        w_elem=w_elem, bias_elem=bias_elem, out_elem=out_elem,
                        post_ops=post_ops, has_bias=bias is not None, **gemm_resident.DEFAULTS)
    _load_uops_first(cfg, b, body, uops, own_dram, push_to_load=True)
    ideal = mb * nb * _ceil_div(k_user, cfg.block_in)
    tiling = GemmTiling(rows[0], nb, 1, "resident", 2, _program_cycles(cfg, b), ideal,
                        (mb * kb * cfg.inp_elem_bytes + nb * kb * cfg.wgt_elem_bytes))
    written = [(out_elem * cfg.out_elem_bytes, mb * nb * cfg.out_elem_bytes)]
    return GemmProgram(b, cfg, m, k_user, n, out_elem, tiling, written, k_blocks=kb)


def _place_operands(cfg, a, w, bias, dram, mb, nb):
    """Pack A, W and the bias into ``dram`` (a new image just large enough when None) and
    reserve the output: ``(builder, own_dram, a_elem, w_elem, bias_elem, out_elem)``."""
    a_t, w_t = pack_inp(cfg, a), pack_wgt(cfg, w)
    own_dram = dram is None
    if own_dram:
        need = a_t.nbytes + w_t.nbytes + mb * nb * cfg.out_elem_bytes + 4 * cfg.uop_depth
        if bias is not None:
            need += nb * cfg.acc_elem_bytes
        dram = Dram(need + 8 * 4096)
    b = ProgramBuilder(cfg, dram)
    a_elem = b.put(MemType.INP, a_t)
    w_elem = b.put(MemType.WGT, w_t)
    bias_elem = b.put(MemType.ACC, pack_acc_rows(cfg, bias)) if bias is not None else None
    return b, own_dram, a_elem, w_elem, bias_elem, b.reserve(MemType.OUT, mb * nb)


def _load_uops_first(cfg, b, body, uops, own_dram, push_to_load=False):
    """Place the micro-ops in DRAM, emit their LOAD ahead of ``body``'s instructions into
    ``b`` and trim an image the builder owns to what was placed."""
    if len(uops) > cfg.uop_depth:
        raise ProgramError(f"the GEMM needs {len(uops)} micro-ops, more than the "
                           f"{cfg.uop_depth} the UOP buffer holds")
    blob = np.frombuffer(encode_uops(uops, cfg), np.uint8)
    uop_elem = b.put(MemType.UOP, blob)
    b.emit(MemInsn(opcode=Opcode.LOAD, memory_type=MemType.UOP, sram_base=0, dram_base=uop_elem,
                   y_size=1, x_size=len(uops), x_stride=len(uops), push_prev_dep=push_to_load))
    b.insns.extend(body.insns)
    if own_dram:
        # Trim the image to what was placed (keeps raw images small for RTL DRAM models).
        end = uop_elem * cfg.uop_elem_bytes + blob.size  # the micro-ops were placed last
        used = -(-(end - b.dram.base) // 4096) * 4096
        b.dram = Dram(base=b.dram.base, data=b.dram.mem[:used].tobytes())


# ------------------------------------------------------------------------------------------------
# Phase timing (VTA's method: time a program with only some kinds of instructions)
# ------------------------------------------------------------------------------------------------

#: The instruction kinds :func:`phase_program` can keep: INP loads, WGT loads, GEMM (including
#: the accumulator resets), ALU (with the ACC loads that feed it) and OUT stores.
PHASES = ("inp", "wgt", "gemm", "alu", "out")


def _phase_of(insn) -> str | None:
    """Which of :data:`PHASES` an instruction belongs to (None: UOP loads, syncs, FINISH)."""
    op = insn.opcode
    if op is Opcode.GEMM:
        return "gemm"
    if op is Opcode.ALU:
        return "alu"
    if isinstance(insn, MemInsn) and insn.x_size and insn.y_size:
        if op is Opcode.STORE:
            return "out"
        return {MemType.INP: "inp", MemType.WGT: "wgt", MemType.ACC: "alu"}.get(insn.memory_type)
    return None


def phase_program(insns, keep) -> list:
    """``insns`` with only the instruction kinds in ``keep`` (a subset of :data:`PHASES`).

    This is how VTA's GEMM benchmark split a program's time ("also timed with only its GEMM,
    only its ALU, only INP loads, only WGT loads, only OUT stores"): every other LOAD, STORE,
    GEMM or ALU becomes a token-only instruction on the same module (``x_size = 0``) with the
    same dependency flags, so the modules still wait for each other exactly as in the full
    program, but do no work. The micro-op LOAD stays when GEMM or ALU instructions do.
    The result computes garbage (use the functional simulator on the same instructions as
    the reference); its cycle count is the time of the kept phases with their synchronisation.
    """
    keep = set(keep)
    bad = keep - set(PHASES)
    if bad:
        raise ProgramError(f"phases must be a subset of {PHASES}, not {sorted(bad)!r}")
    compute_kept = bool(keep & {"gemm", "alu"})
    deps = [f.name for f in fields(MemInsn) if f.name.endswith("_dep")]
    out = []
    for insn in insns:
        phase = _phase_of(insn)
        if phase is None and not (isinstance(insn, MemInsn) and insn.memory_type is MemType.UOP
                                  and insn.x_size and insn.y_size and not compute_kept):
            out.append(insn)
            continue
        if phase in keep:
            out.append(insn)
            continue
        flags = {name: getattr(insn, name) for name in deps}
        if insn.opcode is Opcode.STORE:
            out.append(MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, **flags))
        elif insn.opcode is Opcode.LOAD and insn.memory_type in (MemType.INP, MemType.WGT):
            out.append(MemInsn(opcode=Opcode.LOAD, memory_type=insn.memory_type, **flags))
        else:  # GEMM, ALU, ACC or UOP load: a sync on the compute module
            out.append(MemInsn(opcode=Opcode.LOAD, memory_type=MemType.UOP, **flags))
    return out


# ------------------------------------------------------------------------------------------------
# Small conformance kernels
# ------------------------------------------------------------------------------------------------

def alu_reference(x: np.ndarray, ops, y: np.ndarray | None = None) -> np.ndarray:
    """Exact int8 result of :func:`alu_program` (int32 wrap-around, SHR semantics of fsim)."""
    from .fsim import alu_apply
    acc = np.asarray(x, np.int32)
    for op, operand in ops:
        acc = alu_apply(AluOp(op), acc, y if operand == "tensor" else np.int32(operand))
    return acc.astype(np.int8)


def alu_program(cfg, x: np.ndarray, ops, y: np.ndarray | None = None):
    """Load int32 ``x`` (and ``y``) into ACC, apply ALU ``ops`` element-wise, store int8.

    ``x`` and ``y`` have shape ``(rows, BATCH, BLOCK_OUT)`` (whole ACC elements). ``ops`` is a
    list of ``(AluOp, imm)`` or ``(AluOp, "tensor")``, the latter using ``y`` as the operand.
    Returns ``(builder, out_elem, rows)``; read the result with
    ``builder.read(MemType.OUT, out_elem, rows)``.
    """
    cfg = load_config(cfg)
    x = np.asarray(x, np.int32)
    rows = x.shape[0]
    shape = (rows, cfg.batch, cfg.block_out)
    if x.shape != shape:
        raise ProgramError(f"x must have shape {shape} (rows, BATCH, BLOCK_OUT), not {x.shape}")
    tensor = any(operand == "tensor" for _, operand in ops)
    if tensor and (y is None or np.asarray(y).shape != shape):
        raise ProgramError(f"a tensor operand needs y of shape {shape}")
    if (2 if tensor else 1) * rows > cfg.acc_depth:
        raise ProgramError(f"{rows} rows do not fit the ACC buffer ({cfg.acc_depth} elements)")
    b = ProgramBuilder(cfg, Dram(4 * rows * cfg.acc_elem_bytes + 4096 + 64 * 16))
    x_elem = b.put(MemType.ACC, x)
    y_elem = b.put(MemType.ACC, np.asarray(y, np.int32)) if tensor else None
    out_elem = b.reserve(MemType.OUT, rows)
    kern = b.uop_kernel([Uop(0, rows if tensor else 0, 0)])
    bounds = b.load_uops(kern)
    b.load(MemType.ACC, 0, x_elem, 1, rows)
    if tensor:
        b.load(MemType.ACC, rows, y_elem, 1, rows)
    for i, (op, operand) in enumerate(ops):
        imm = None if operand == "tensor" else int(operand)
        b.alu(AluOp(op), bounds, iter_out=rows, dst=(1, 0), src=(1, 0), imm=imm,
              push_next_dep=(i == len(ops) - 1))
    if not ops:
        b.sync("compute", push_next_dep=True)
    b.store(0, out_elem, 1, rows, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    return b, out_elem, rows


def padded_load_reference(x: np.ndarray, pad) -> np.ndarray:
    """Exact result of :func:`padded_load_program`: ``x`` (y, x, ...) zero-padded."""
    y0, y1, x0, x1 = pad
    widths = [(y0, y1), (x0, x1)] + [(0, 0)] * (x.ndim - 2)
    return np.pad(x, widths)


def padded_load_program(cfg, x: np.ndarray, pad, mem: MemType = MemType.INP):
    """Load ``x`` of shape (rows, cols, BATCH, BLOCK) with ``pad = (y0, y1, x0, x1)`` zero
    padding into INP or ACC, copy it to OUT and store it.

    INP data reaches OUT through a GEMM against an identity weight tile (the only path from the
    INP buffer to the output); ACC data through an ALU SHR by 0. Returns
    ``(builder, out_elem, (rows, cols))`` of the padded block.
    """
    cfg = load_config(cfg)
    if mem not in (MemType.INP, MemType.ACC):
        raise ProgramError(f"padded loads exist for INP and ACC, not {mem.name}")
    y0, y1, x0, x1 = pad
    rows, cols = x.shape[:2]
    prow, pcol = y0 + rows + y1, x0 + cols + x1
    count = prow * pcol
    b = ProgramBuilder(cfg, Dram(x.nbytes + 2 * count * cfg.acc_elem_bytes + 65536))
    x_elem = b.put(mem, x)
    out_elem = b.reserve(MemType.OUT, count)
    if mem is MemType.INP:
        if cfg.batch * cfg.block_in != cfg.batch * cfg.block_out or count > cfg.inp_depth:
            raise ProgramError(f"{count} padded INP elements do not fit the buffer")
        eye = np.eye(cfg.block_out, cfg.block_in, dtype=np.int8)[None]
        w_elem = b.put(MemType.WGT, eye)
        bounds = b.load_uops(b.uop_kernel([Uop(0, 0, 0)]))
        b.load(MemType.WGT, 0, w_elem, 1, 1)
        b.load(MemType.INP, 0, x_elem, rows, cols, cols, pad=(y0, y1, x0, x1),
               push_next_dep=True)
        b.gemm(bounds, iter_out=count, dst=(1, 0), reset=True)
        b.gemm(bounds, iter_out=count, dst=(1, 0), src=(1, 0), pop_prev_dep=True,
               push_next_dep=True)
    else:
        if count > cfg.acc_depth:
            raise ProgramError(f"{count} padded ACC elements do not fit the buffer")
        bounds = b.load_uops(b.uop_kernel([Uop(0, 0, 0)]))
        b.load(MemType.ACC, 0, x_elem, rows, cols, cols, pad=(y0, y1, x0, x1))
        b.alu(AluOp.SHR, bounds, iter_out=count, dst=(1, 0), imm=0, push_next_dep=True)
    b.store(0, out_elem, 1, count, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    return b, out_elem, (prow, pcol)


# ------------------------------------------------------------------------------------------------
# The conformance suite as data, for running on every target
# ------------------------------------------------------------------------------------------------

def _acc_rows(cfg, rng, rows, lo, hi):
    return rng.integers(lo, hi, (rows, cfg.batch, cfg.block_out)).astype(np.int32)


def _pool_program(cfg, rng):
    """2x2 max pooling of an 8x8 grid of ACC elements: ALU reductions into repeated dsts."""
    x = _acc_rows(cfg, rng, 80, -1000, 1000)
    x[64:] = -(1 << 31)
    b = ProgramBuilder(cfg, Dram(1 << 16))
    x_elem, out_elem = b.put(MemType.ACC, x), b.reserve(MemType.OUT, 16)
    b.load(MemType.ACC, 0, x_elem, 1, 80)
    k = b.load_uops(b.uop_kernel([(64, 8 * dy + dx, 0) for dy in range(2) for dx in range(2)]))
    b.alu(AluOp.MAX, k, iter_out=4, iter_in=4, dst=(4, 1), src=(16, 2), push_next_dep=True)
    b.store(64, out_elem, 1, 16, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    return b


def _chain_program(cfg, rng, op):
    """acc[i] = op(acc[i], acc[i-1]) in order: each source is the previous iteration's dst."""
    n = 20
    x = _acc_rows(cfg, rng, n, -50, 50)
    b = ProgramBuilder(cfg, Dram(1 << 16))
    x_elem, out_elem = b.put(MemType.ACC, x), b.reserve(MemType.OUT, n - 1)
    b.load(MemType.ACC, 0, x_elem, 1, n)
    k = b.load_uops(b.uop_kernel([(1, 0, 0)]))
    b.alu(op, k, iter_out=n - 1, dst=(1, 0), src=(1, 0), push_next_dep=True)
    b.store(1, out_elem, 1, n - 1, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    return b


def conformance_suite(cfg, large: bool = True) -> list:
    """VTA's conformance checks (docs/vta-isa.md) as ``(name, ProgramBuilder)`` pairs.

    Every program is deterministic (fixed seeds) and ends with its stores ordered before
    FINISH, so a target is checked by running ``builder.encode()`` on a copy of
    ``builder.dram`` and comparing the final image with the functional simulator's.
    ``large=False`` leaves out the 128x128x128 GEMMs and the ResNet-18 C2 rows (the slow ones
    on a Python RTL simulation).
    """
    cfg = load_config(cfg)
    rng = np.random.default_rng(2018)
    suite = []
    b, _, _ = alu_program(cfg, _acc_rows(cfg, rng, 40, -(1 << 31), 1 << 31), [(AluOp.SHR, 0)])
    suite.append(("load_acc_shr0_store", b))
    for pad in [(2, 0, 0, 0), (0, 0, 2, 0), (0, 2, 0, 0), (0, 0, 0, 2), (1, 1, 1, 1)]:
        for mem in (MemType.INP, MemType.ACC):
            dt, width = (np.int8, cfg.block_in) if mem is MemType.INP else (np.int32,
                                                                          cfg.block_out)
            x = rng.integers(-128, 128, (3, 5, cfg.batch, width)).astype(dt)
            suite.append((f"padded_load_{mem.name}_{'_'.join(map(str, pad))}",
                          padded_load_program(cfg, x, pad, mem)[0]))
    a = rng.integers(-128, 128, (6 * cfg.batch, 4 * cfg.block_in), dtype=np.int8)
    w = rng.integers(-128, 128, (4 * cfg.block_out, 4 * cfg.block_in), dtype=np.int8)
    for threads in (1, 2):
        prog = gemm_program(cfg, a, w, shift=8, clip=(0, 127), threads=threads, tile=(2, 2, 2))
        suite.append((f"gemm_shr_max_min_{threads}thread", prog.builder))
    x, y = _acc_rows(cfg, rng, 24, -16, 16), _acc_rows(cfg, rng, 24, -16, 16)
    imm = int(rng.integers(1, 5))
    for name, ops in [("shl_imm", [(AluOp.SHR, -imm)]), ("max_imm", [(AluOp.MAX, imm)]),
                      ("max_tensor", [(AluOp.MAX, "tensor")]), ("add_imm", [(AluOp.ADD, imm)]),
                      ("add_tensor", [(AluOp.ADD, "tensor")]), ("shr_imm", [(AluOp.SHR, imm)]),
                      ("mul_imm", [(AluOp.MUL, imm)]), ("mul_tensor", [(AluOp.MUL, "tensor")]),
                      ("min_tensor", [(AluOp.MIN, "tensor")])]:
        suite.append((f"alu_{name}", alu_program(cfg, x, ops, y)[0]))
    relu_in = _acc_rows(cfg, rng, 30, -256, 256)
    suite.append(("relu_clip", alu_program(cfg, relu_in, [(AluOp.MAX, 0), (AluOp.MIN, 127)])[0]))
    suite.append(("shift_and_scale", alu_program(cfg, relu_in, [(AluOp.ADD, 3),
                                                                (AluOp.SHR, 2)])[0]))
    big = _acc_rows(cfg, rng, 8, (1 << 31) - 100, (1 << 31) - 1)
    suite.append(("int32_wrap_add_mul_shr", alu_program(
        cfg, big, [(AluOp.ADD, 1000), (AluOp.MUL, 3), (AluOp.SHR, 33), (AluOp.SHR, 24)])[0]))
    suite.append(("alu_max_pool", _pool_program(cfg, rng)))
    suite.append(("alu_running_sum", _chain_program(cfg, rng, AluOp.ADD)))
    suite.append(("alu_running_product", _chain_program(cfg, rng, AluOp.MUL)))
    if large:
        a = rng.integers(-128, 128, (128, 128), dtype=np.int8)
        w = rng.integers(-128, 128, (128, 128), dtype=np.int8)
        bias = rng.integers(-(1 << 14), 1 << 14, 128).astype(np.int32)
        for threads in (1, 2):
            prog = gemm_program(cfg, a, w, bias, shift=8, clip=(0, 127), threads=threads)
            suite.append((f"gemm_128_bias_shift_clip_{threads}thread", prog.builder))
        # ResNet-18 C2 (3x3, 64 -> 64 channels, 56 wide) for 4 output rows, as im2col GEMM.
        cols = rng.integers(-128, 128, (4 * 56, 9 * 64), dtype=np.int8)
        wmat = rng.integers(-128, 128, (64, 9 * 64), dtype=np.int8)
        bias = rng.integers(-(1 << 12), 1 << 12, 64).astype(np.int32)
        prog = gemm_program(cfg, cols, wmat, bias, shift=8, clip=(0, 127), threads=2)
        suite.append(("resnet18_c2_rows", prog.builder))
    return suite
