"""Random, legal instruction streams for lockstep testing (fsim vs RTL vs board).

:func:`random_program` builds a program from a seed. Every program is legal by construction:

* Work is cut into *blocks*; each block is a load phase (LOAD INP/WGT on the load module), a
  compute phase (LOAD UOP/ACC, GEMM, ALU on the compute module) and a store phase (STORE).
  Blocks alternate between ``slots`` (1 or 2) disjoint windows of the INP, WGT and ACC/OUT
  buffers, like VTA's virtual threads, so the load of block ``i+1`` and the store of block
  ``i-1`` really run concurrently with the compute of block ``i`` on a decoupled machine.
* Dependency tokens order every access that could race: load -> compute (data ready),
  compute -> load (the slot's previous reader is done), compute -> store (results ready),
  store -> compute (OUT slot drained). Every pop has a matching push earlier in program order,
  at most ``slots`` tokens are ever outstanding, and FINISH is preceded by a pop of the token the
  last STORE pushes. So the result is schedule-independent and the program never deadlocks.
* Every buffer element a program reads was written first (each slot's window is loaded in full,
  and its OUT copy written by an ALU pass, in the slot's first block); micro-ops are only used
  from kernels loaded by the same slot. Uninitialised SRAM therefore never leaks into a result.
* All indices stay in range; DRAM reads come from input areas filled with random data; each
  STORE writes its own output region surrounded by guard bytes, listed in
  :attr:`RandomProgram.written` and checked by :meth:`RandomProgram.check_guards`.

Sizes, strides, pads, micro-ops, loop extents and factors, ALU opcodes and immediates (including
shift amounts outside [-32, 31] that exercise the 6-bit truncation), GEMM and ALU resets and
sync-only (x_size = 0) instructions are all drawn from ``numpy.random.default_rng(seed)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..hw.config import HwConfig, load_config
from ..hw.isa import (LOOP_ITER_WIDTH, AluInsn, AluOp, FinishInsn, GemmInsn, MemInsn, MemType,
                      Opcode, Uop, encode_program, encode_uops)
from .dram import Dram

__all__ = ["RandomProgram", "random_program", "GUARD_BYTES"]

#: Bytes of guard pattern before and after every region a STORE writes.
GUARD_BYTES = 64


@dataclass
class RandomProgram:
    """A generated program: instructions, its initial DRAM image and what it may write."""
    cfg: HwConfig
    seed: int
    insns: list
    dram: Dram
    #: ``(physical address, nbytes)`` of every region STOREs may write (guards excluded).
    written: list = field(default_factory=list)
    #: ``(physical address, expected bytes)`` of every guard zone.
    guards: list = field(default_factory=list)
    #: Rough amount of work in cycles (micro-op iterations plus DMA beats).
    work: int = 0
    #: Number of load/compute/store blocks and of buffer slots (virtual threads).
    blocks: int = 0
    slots: int = 1

    def encode(self) -> bytes:
        """The instruction stream (16-byte words)."""
        return encode_program(self.insns, self.cfg)

    def fresh_dram(self) -> Dram:
        """A copy of the initial DRAM image (run each target on its own copy)."""
        return Dram(base=self.dram.base, data=self.dram.tobytes())

    def check_guards(self, image) -> list[str]:
        """Messages for every guard zone that ``image`` (a Dram or raw bytes) changed."""
        if not isinstance(image, Dram):
            image = Dram(base=self.dram.base, data=image)
        problems = []
        for addr, expected in self.guards:
            got = image.read(addr, len(expected))
            bad = np.flatnonzero(got != expected)
            if bad.size:
                problems.append(f"seed {self.seed}: guard bytes at {addr:#x} changed at "
                                f"{bad.size} byte(s), first at {addr + int(bad[0]):#x}")
        return problems


class _Gen:
    """The generator's state (one instance per program)."""

    def __init__(self, cfg: HwConfig, rng: np.random.Generator, slots: int, window: dict,
                 dst_rule: bool):
        self.cfg, self.rng, self.slots, self.dst_rule = cfg, rng, slots, dst_rule
        self.eb = {MemType.UOP: cfg.uop_elem_bytes, MemType.INP: cfg.inp_elem_bytes,
                   MemType.WGT: cfg.wgt_elem_bytes, MemType.ACC: cfg.acc_elem_bytes,
                   MemType.OUT: cfg.out_elem_bytes}
        depth = {MemType.INP: cfg.inp_depth, MemType.WGT: cfg.wgt_depth,
                 MemType.ACC: cfg.acc_depth}
        # Each slot gets a window [lo, lo + size) inside its half of each buffer; the window is
        # placed at a random offset so high address bits are exercised too.
        self.win = {}
        for mem, d in depth.items():
            half = d // slots
            size = min(window[mem], half)
            for s in range(slots):
                lo = s * half + int(rng.integers(0, half - size + 1))
                self.win[(mem, s)] = (lo, size)
        self.uop_mem = [None] * cfg.uop_depth   # (slot, Uop) per micro-op buffer entry
        self.kernels = []                        # (slot, bgn, end) loaded kernels
        self.uop_words: list[Uop] = []           # the UOP input area, in order
        self.areas = {}                          # input area sizes in elements
        self.out_regions = []                    # (elements) per STORE region
        self.work = 0
        self.last_dsts: list[int] = []           # for the optional dst rule

    # --- helpers ---------------------------------------------------------------------------
    def ri(self, lo: int, hi: int) -> int:
        """A random integer in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def small(self, hi: int) -> int:
        """A random size in [1, hi], usually small (geometric), sometimes uniform."""
        if hi <= 1:
            return 1
        if self.rng.random() < 0.7:
            return min(hi, int(self.rng.geometric(0.3)))
        return self.ri(1, hi)

    def dram_span(self, mem: MemType, y: int, x: int, stride: int) -> tuple:
        """A symbolic DRAM address (area, element offset) for a read of y rows of x."""
        span = (y - 1) * stride + x
        size = self.areas[mem]
        return (mem.name, self.ri(0, size - span))

    # --- loads ---------------------------------------------------------------------------------
    def load(self, mem: MemType, slot: int, full: bool = False):
        lo, size = self.win[(mem, slot)]
        max_rows = 8
        if full:
            cols = min(size, 64)
            rows = size // cols
            insns = []
            for r0 in range(0, rows * cols, cols):
                insns.append(self._mem_load(mem, lo + r0, 1, cols, cols, (0, 0, 0, 0)))
            rest = size - rows * cols
            if rest:
                insns.append(self._mem_load(mem, lo + rows * cols, 1, rest, rest, (0, 0, 0, 0)))
            return insns
        padded = mem in (MemType.INP, MemType.ACC) and self.rng.random() < 0.4
        for _ in range(20):
            pad = tuple(self.ri(0, 3) if padded and self.rng.random() < 0.5 else 0
                        for _ in range(4))
            y = self.small(max_rows)
            x = self.small(size)
            total = (pad[0] + y + pad[1]) * (pad[2] + x + pad[3])
            if total <= size:
                break
        else:
            pad, y, x, total = (0, 0, 0, 0), 1, 1, 1
        stride = x + self.ri(0, 4) if self.rng.random() < 0.8 else self.ri(0, x + 8)
        sram = lo + self.ri(0, size - total)
        return [self._mem_load(mem, sram, y, x, stride, pad)]

    def _mem_load(self, mem, sram, y, x, stride, pad):
        self.work += 16 + (y * x * self.eb[mem]) // self.cfg.axi_bytes
        return MemInsn(opcode=Opcode.LOAD, memory_type=mem, sram_base=sram,
                       dram_base=self.dram_span(mem, y, x, stride), y_size=y, x_size=x,
                       x_stride=stride, y_pad_0=pad[0], y_pad_1=pad[1], x_pad_0=pad[2],
                       x_pad_1=pad[3])

    # --- micro-op kernels ------------------------------------------------------------------------
    def kernel(self, slot: int, fields: dict, count: int, spans: dict):
        """Load (or reuse) ``count`` micro-ops whose fields stay in their windows after adding
        ``spans``; returns ``(insns, bgn, end)``."""
        ok = []
        for s, bgn, end in self.kernels:
            if s != slot or end - bgn != count:
                continue
            uops = self.uop_mem[bgn:end]
            if any(u is None or u[0] != slot for u in uops):
                continue
            if all(self._fits(getattr(u[1], f), fields[f], spans[f]) for u in uops for f in fields):
                ok.append((bgn, end))
        if ok and self.rng.random() < 0.5:
            bgn, end = ok[self.ri(0, len(ok) - 1)]
            return [], bgn, end
        uops = []
        for _ in range(count):
            vals = {"dst_idx": 0, "src_idx": 0, "wgt_idx": 0}
            for f, (lo, size) in fields.items():
                vals[f] = lo + self.ri(0, size - 1 - spans[f])
            uops.append(Uop(**vals))
        bgn = self.ri(0, self.cfg.uop_depth - count)
        end = bgn + count
        # Loading over entries invalidates kernels that overlap them.
        self.kernels = [(s, b, e) for s, b, e in self.kernels if e <= bgn or b >= end]
        self.kernels.append((slot, bgn, end))
        for k, u in enumerate(uops):
            self.uop_mem[bgn + k] = (slot, u)
        offset = len(self.uop_words)
        self.uop_words.extend(uops)
        self.work += 16 + count * 4 // self.cfg.axi_bytes
        insn = MemInsn(opcode=Opcode.LOAD, memory_type=MemType.UOP, sram_base=bgn,
                       dram_base=("UOP", offset), y_size=1, x_size=count, x_stride=count)
        return [insn], bgn, end

    @staticmethod
    def _fits(value, window, span):
        lo, size = window
        return lo <= value and value + span <= lo + size - 1

    def loop(self, windows: dict, budget: int):
        """Random loop extents and factors whose index spans fit ``windows``."""
        i_out = self.small(min(budget, (1 << LOOP_ITER_WIDTH) - 1))
        i_in = self.small(max(1, min(budget // i_out, (1 << LOOP_ITER_WIDTH) - 1)))
        factors, spans = {}, {}
        for f, (lo, size) in windows.items():
            room = self.ri(0, size - 1) if self.rng.random() < 0.8 else size - 1
            fo = self.ri(0, room // (i_out - 1)) if i_out > 1 else self.ri(0, 3)
            left = room - (i_out - 1) * fo if i_out > 1 else room
            fi = self.ri(0, left // (i_in - 1)) if i_in > 1 else self.ri(0, 3)
            factors[f] = (fo, fi)
            spans[f] = (i_out - 1) * fo + (i_in - 1) * fi
        return i_out, i_in, factors, spans

    def _dst_ok(self, bgn, end, i_out, i_in, f_out, f_in) -> bool:
        """VTA's pipeline rule: a destination differs from the previous two."""
        base = np.array([self.uop_mem[k][1].dst_idx for k in range(bgn, end)], np.int64)
        d = (base[None, None, :] + np.arange(i_out)[:, None, None] * f_out
             + np.arange(i_in)[None, :, None] * f_in).reshape(-1)
        seq = np.concatenate([np.array(self.last_dsts[-2:], np.int64), d])
        ok = not (np.any(seq[1:] == seq[:-1]) or np.any(seq[2:] == seq[:-2]))
        if ok:
            self.last_dsts = [int(v) for v in d[-2:]]
        return ok

    # --- compute ---------------------------------------------------------------------------------
    def gemm_or_alu(self, slot: int, budget: int):
        is_gemm = self.rng.random() < 0.5
        acc_w = self.win[(MemType.ACC, slot)]
        if is_gemm:
            windows = {"dst_idx": acc_w, "src_idx": self.win[(MemType.INP, slot)],
                       "wgt_idx": self.win[(MemType.WGT, slot)]}
        else:
            windows = {"dst_idx": acc_w, "src_idx": acc_w}
        pre = []  # every kernel load is kept: the generator's state already counts it loaded
        for _ in range(20):
            count = self.small(8)
            i_out, i_in, factors, spans = self.loop(windows, max(1, budget // count))
            loads, bgn, end = self.kernel(slot, windows, count, spans)
            pre += loads
            if not self.dst_rule or self._dst_ok(bgn, end, i_out, i_in, *factors["dst_idx"]):
                break
        else:
            return pre  # no legal draw: skip the instruction
        reset = self.rng.random() < 0.15
        common = dict(reset_reg=reset, uop_bgn=bgn, uop_end=end, iter_out=i_out, iter_in=i_in,
                      dst_factor_out=factors["dst_idx"][0], dst_factor_in=factors["dst_idx"][1],
                      src_factor_out=factors["src_idx"][0], src_factor_in=factors["src_idx"][1])
        self.work += 8 + i_out * i_in * (end - bgn)
        if is_gemm:
            return pre + [GemmInsn(**common, wgt_factor_out=factors["wgt_idx"][0],
                                   wgt_factor_in=factors["wgt_idx"][1])]
        op = AluOp(self.ri(0, 4))
        use_imm = self.rng.random() < 0.5
        if op is AluOp.SHR:
            imm = self.ri(-40, 40)
        elif op is AluOp.MUL:
            imm = self.ri(-300, 300)
        else:
            imm = self.ri(-(1 << 15), (1 << 15) - 1)
        return pre + [AluInsn(**common, alu_opcode=op, use_imm=use_imm,
                              imm=imm if use_imm else 0)]

    def init_slot(self, slot: int):
        """Compute-side initialisation of a slot's ACC window and its OUT mirror."""
        lo, size = self.win[(MemType.ACC, slot)]
        insns = self.load(MemType.ACC, slot, full=True)
        pre, bgn, end = self._forced_kernel(slot, Uop(lo, 0, 0))
        self.work += size
        self.last_dsts = [lo + size - 2, lo + size - 1]
        alu = AluInsn(uop_bgn=bgn, uop_end=end, iter_out=size, dst_factor_out=1,
                      alu_opcode=AluOp.ADD, use_imm=True, imm=0)
        return insns + pre + [alu]

    def _forced_kernel(self, slot, uop):
        bgn = self.ri(0, self.cfg.uop_depth - 1)
        self.kernels = [(s, b, e) for s, b, e in self.kernels if e <= bgn or b >= bgn + 1]
        self.kernels.append((slot, bgn, bgn + 1))
        self.uop_mem[bgn] = (slot, uop)
        offset = len(self.uop_words)
        self.uop_words.append(uop)
        return [MemInsn(opcode=Opcode.LOAD, memory_type=MemType.UOP, sram_base=bgn,
                        dram_base=("UOP", offset), y_size=1, x_size=1, x_stride=1)], bgn, bgn + 1

    # --- stores ----------------------------------------------------------------------------------
    def store(self, slot: int):
        lo, size = self.win[(MemType.ACC, slot)]
        y = self.small(8)
        x = self.small(max(1, size // y))
        if y * x > size:
            y, x = 1, min(x, size)
        stride = x + (self.ri(0, 3) if y > 1 else 0)
        sram = lo + self.ri(0, size - y * x)
        region = len(self.out_regions)
        self.out_regions.append((y - 1) * stride + x)
        self.work += 16 + y * x * self.eb[MemType.OUT] // self.cfg.axi_bytes
        return MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, sram_base=sram,
                       dram_base=(f"OUT{region}", 0), y_size=y, x_size=x, x_stride=stride)


def _with(insn, **flags):
    return dataclasses.replace(insn, **{k: getattr(insn, k) or v for k, v in flags.items()})


def _sync(module: str, **flags):
    if module == "load":
        return MemInsn(opcode=Opcode.LOAD, memory_type=MemType.INP, **flags)
    if module == "compute":
        return MemInsn(opcode=Opcode.LOAD, memory_type=MemType.UOP, **flags)
    return MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, **flags)


def _attach(insns: list, module: str, rng, pop: dict, push: dict) -> list:
    """Put the pop flags on the first instruction and the push flags on the last, or on
    separate sync-only instructions (randomly, both are legal)."""
    insns = list(insns)
    if not insns:
        insns = [_sync(module)]
    if pop:
        if rng.random() < 0.2:
            insns.insert(0, _sync(module, **pop))
        else:
            insns[0] = _with(insns[0], **pop)
    if push:
        if rng.random() < 0.2:
            insns.append(_sync(module, **push))
        else:
            insns[-1] = _with(insns[-1], **push)
    return insns


def random_program(cfg="tiny", seed: int = 0, *, work: int = 2000, threads: int | None = None,
                   window: int | None = None, dst_rule: bool = False,
                   dram_base: int = 0) -> RandomProgram:
    """Generate a legal random program (see the module docstring).

    Parameters
    ----------
    cfg : HwConfig or str
        Configuration or preset name.
    seed : int
        Everything is drawn from ``numpy.random.default_rng(seed)``: same seed, same program.
    work : int
        Approximate amount of work in cycles (micro-op iterations plus DMA beats) to generate;
        from a handful of instructions (``work=1``) to long programs (``work=100_000``).
    threads : 1, 2 or None
        Buffer slots (virtual threads); ``None`` draws one.
    window : int, optional
        Elements of each buffer a slot uses (default: ``work // 16`` within [4, 64]). Each
        slot loads its window in full in its first block, so large windows cost DMA time.
    dst_rule : bool
        Keep VTA's pipeline rule: a GEMM/ALU destination differs from the previous two
        (instructions that cannot satisfy it within 20 draws are skipped).
    dram_base : int
        Physical address of the DRAM image (aligned to 4 KiB).
    """
    cfg = load_config(cfg)
    if isinstance(work, bool) or not isinstance(work, int) or work < 1:
        raise ValueError(f"work must be a positive integer, not {work!r}")
    if threads not in (None, 1, 2):
        raise ValueError(f"threads must be 1, 2 or None, not {threads!r}")
    if dram_base % 4096 or dram_base < 0:
        raise ValueError(f"dram_base must be a non-negative multiple of 4096, not {dram_base:#x}")
    rng = np.random.default_rng(seed)
    slots = threads if threads is not None else int(rng.integers(1, 3))
    slots = max(1, min(slots, cfg.dep_queue_depth))
    if window is None:
        window = max(4, min(64, work // 16))  # small programs stay small
    elif isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, not {window!r}")
    win = {MemType.INP: window, MemType.WGT: min(window, max(2, cfg.wgt_depth // 8)),
           MemType.ACC: window}
    g = _Gen(cfg, rng, slots, win, dst_rule)
    # Input areas: big enough for any strided read the generator draws.
    for mem in (MemType.INP, MemType.WGT, MemType.ACC):
        g.areas[mem] = 8 * (max(w for (m, _), (_, w) in g.win.items() if m is mem) + 8) + 64

    blocks = []  # (slot, load insns, compute insns, store insns)
    b = 0
    while b < slots or g.work < work:
        slot = b % slots
        first = b < slots
        loads, comp, stores = [], [], []
        if first:
            loads += g.load(MemType.INP, slot, full=True) + g.load(MemType.WGT, slot, full=True)
            comp += g.init_slot(slot)
        budget = max(1, min(4096, work // 4))
        for _ in range(g.ri(0, 3)):
            loads += g.load(MemType.INP if rng.random() < 0.5 else MemType.WGT, slot)
        for _ in range(g.ri(1, 5)):
            r = rng.random()
            if r < 0.15:
                comp += g.load(MemType.ACC, slot)
            else:
                comp += g.gemm_or_alu(slot, budget)
        for _ in range(g.ri(0, 3)):
            stores.append(g.store(slot))
        blocks.append((slot, loads, comp, stores))
        b += 1

    nblocks = len(blocks)
    insns = []
    for i, (slot, loads, comp, stores) in enumerate(blocks):
        later = i + slots < nblocks
        insns += _attach(loads, "load", rng, {"pop_next_dep": True} if i >= slots else {},
                         {"push_next_dep": True})
        push = {"push_next_dep": True}
        if later:
            push["push_prev_dep"] = True
        pop = {"pop_prev_dep": True}
        if i >= slots:
            pop["pop_next_dep"] = True
        insns += _attach(comp, "compute", rng, pop, push)
        insns += _attach(stores, "store", rng, {"pop_prev_dep": True},
                         {"push_prev_dep": True} if (later or i == nblocks - 1) else {})
    insns.append(_sync("compute", pop_next_dep=True))
    insns.append(FinishInsn())

    # --- lay out DRAM and resolve symbolic addresses ------------------------------------------
    eb = g.eb
    align = max(64, max(eb.values()))
    pos = dram_base
    bases = {}
    chunks = []

    def place(name, nbytes, data):
        nonlocal pos
        pos = -(-pos // align) * align
        bases[name] = pos
        chunks.append((pos, data))
        pos += nbytes

    uop_blob = np.frombuffer(encode_uops(g.uop_words, cfg), np.uint8) if g.uop_words \
        else np.zeros(0, np.uint8)
    place("UOP", uop_blob.size, uop_blob)
    for mem in (MemType.INP, MemType.WGT):
        n = g.areas[mem] * eb[mem]
        place(mem.name, n, rng.integers(-128, 128, n, dtype=np.int8).view(np.uint8))
    n_acc = g.areas[MemType.ACC] * eb[MemType.ACC] // 4
    acc_vals = np.where(rng.random(n_acc) < 0.5, rng.integers(-300, 300, n_acc),
                        rng.integers(-(1 << 31), 1 << 31, n_acc)).astype("<i4")
    place("ACC", acc_vals.nbytes, acc_vals.view(np.uint8))
    written, guards = [], []
    for k, elems in enumerate(g.out_regions):
        nbytes = elems * eb[MemType.OUT]
        pre = rng.integers(0, 256, GUARD_BYTES, dtype=np.uint8)
        place(f"GUARD{k}a", GUARD_BYTES, pre)
        guards.append((bases[f"GUARD{k}a"], pre))
        place(f"OUT{k}", nbytes, rng.integers(0, 256, nbytes, dtype=np.uint8))
        written.append((bases[f"OUT{k}"], nbytes))
        post = rng.integers(0, 256, GUARD_BYTES, dtype=np.uint8)
        # The trailing guard follows the region directly (no alignment gap).
        bases[f"GUARD{k}b"] = pos
        chunks.append((pos, post))
        guards.append((pos, post))
        pos += GUARD_BYTES
    dram = Dram(pos - dram_base + 64, base=dram_base)
    for addr, data in chunks:
        dram.write(addr, data)

    resolved = []
    for insn in insns:
        if isinstance(insn, MemInsn) and isinstance(insn.dram_base, tuple):
            name, off = insn.dram_base
            e = eb[MemType.OUT] if name.startswith("OUT") else eb[MemType[name]]
            insn = dataclasses.replace(insn, dram_base=bases[name] // e + off)
        resolved.append(insn)
    return RandomProgram(cfg, seed, resolved, dram, written, guards, g.work, nblocks, slots)
