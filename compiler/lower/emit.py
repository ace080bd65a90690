"""The instruction emitter shared by every operator's lowering.

It owns three things an operator lowering should not have to think about:

* the program's DRAM region (a bump allocator of byte offsets relative to a region base of 0,
  and the constant segments: packed weights, ALU parameters, micro-op kernels);
* the micro-op buffer of the operator being lowered (kernels are registered up front,
  deduplicated, and loaded with one LOAD UOP at the start of the operator);
* the dependency tokens of the two virtual threads.

Virtual threads
---------------
The INP and WGT buffers are split into two halves, used by alternate *load steps*; the ACC/OUT
buffer is split into two halves used by alternate *output tiles*. Tokens (1-bit FIFOs):

* load step ``k`` pops a compute->load token first if ``k >= 2`` (half ``k % 2`` is free once the
  GEMMs of step ``k - 2`` are done) and pushes load->compute after its last LOAD;
* the compute instructions reading step ``k`` pop that load->compute token first and push
  compute->load after the last one;
* the first compute instruction of tile ``t`` pops store->compute if ``t >= 2`` (the stores of
  tile ``t - 2`` have drained that ACC/OUT half); its last one pushes compute->store;
* the stores of tile ``t`` pop compute->store first and push store->compute after the last one.

Two compute lanes (``docs/scheduling.md``)
------------------------------------------
Tile slot ``h`` keeps all its ACC use inside bank ``h`` (``[h*D/2, (h+1)*D/2)``). A lowering
marks the three parts of a tile: its *prologue* (:meth:`tile`: reset / re-initialisation),
its *body* (:meth:`tile_body`: load steps and GEMMs) and its *epilogue*
(:meth:`tile_epilogue`: ALU passes), then the stores. The emitter holds tile ``t``'s epilogue
and stores back and emits them after tile ``t+1``'s prologue, interleaved with ``t+1``'s body
in proportion to their estimated cycles (each lane keeps work queued), so that the reset of
``t+1`` runs on the ALU lane during ``t``'s GEMMs and ``t``'s epilogue during ``t+1``'s GEMMs.
The epilogue's first pass still precedes ``t+1``'s first GEMM. Token flags travel with their
instructions: every pop still refers to an earlier push. Held-back instructions are flushed at
barriers and at the end of each operator.

Between operators a *barrier* drains both pipelines (the next operator may read what this one
stored): compute pops the outstanding store->compute tokens, then pushes one compute->load token
that the load module pops, with the outstanding ones, before its next load. Every dependency
therefore points backwards in program order, so the in-order fetch can never deadlock, and every
token pushed is popped: the token queues are empty when FINISH runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ...hw.config import HwConfig
from ...hw.isa import MemType, Opcode, Uop, encode_uops
from ...sim.dram import Dram
from ..builder import ProgramBuilder
from ..cost import insn_cycles

__all__ = ["LoweringError", "Region", "Emitter"]


class LoweringError(ValueError):
    """An operator cannot be lowered for this configuration (names the operator and limit)."""


class Region:
    """A program's DRAM region: byte offsets from 0 plus the constant data to write there."""

    def __init__(self):
        self.size = 0
        self.segments: list[tuple[int, bytes]] = []

    def alloc(self, nbytes: int, align: int = 64) -> int:
        """Reserve ``nbytes``; return the byte offset."""
        off = -(-self.size // align) * align
        self.size = off + int(nbytes)
        return off

    def const(self, data, align: int = 64) -> int:
        """Place constant bytes (written by the host before the run); return the byte offset."""
        blob = np.ascontiguousarray(data).tobytes()
        off = self.alloc(len(blob), align)
        self.segments.append((off, blob))
        return off


_LOAD_MODULE = (MemType.INP, MemType.WGT)


class Emitter:
    """Emits one program: instructions, region, micro-ops, and the token protocol above."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self.b = ProgramBuilder(cfg, Dram(0))
        self.region = Region()
        self.inp_half = cfg.inp_depth // 2
        self.wgt_half = cfg.wgt_depth // 2
        self.acc_half = cfg.acc_depth // 2
        self._step = 0          # load steps in the current segment
        self._barrier_token = False  # a barrier token the next INP load must pop
        self._tile = 0          # output tiles in the current segment
        self._mark = None
        self._uops: list[Uop] = []
        self._uop_index: dict = {}
        self._body_mark = self._epi_mark = None
        self._pending: list | None = None  # held-back epilogue and stores
        #: Interleave held-back epilogues with the next tile's body (False: emit them whole
        #: right after the next tile's prologue, the spec's minimal order).
        self.interleave = True
        #: Let lowerings compare candidate tilings on the lane model (off for the
        #: partitioner's capability checks, which only need some tiling to fit).
        self.plan_trials = True

    # --- helpers ---------------------------------------------------------------------------
    @property
    def insns(self) -> list:
        return self.b.insns

    def elem_bytes(self, mem: MemType) -> int:
        return self.b.elem_bytes(mem)

    def alloc(self, mem: MemType, count: int) -> int:
        """Reserve ``count`` elements of ``mem`` in the region; return the element address."""
        eb = self.elem_bytes(mem)
        return self.region.alloc(count * eb, max(eb, 64)) // eb

    def const(self, mem: MemType, array) -> int:
        """Place constant elements; return their element address."""
        eb = self.elem_bytes(mem)
        arr = np.ascontiguousarray(array)
        if arr.nbytes % eb:
            raise LoweringError(f"constant of {arr.nbytes} bytes is not whole {mem.name} elements")
        return self.region.const(arr, max(eb, 64)) // eb

    def _flag(self, idx: int, **flags):
        self.insns[idx] = dataclasses.replace(self.insns[idx], **flags)

    # --- micro-ops ---------------------------------------------------------------------------
    def begin_op(self):
        """Start an operator: its micro-op buffer starts empty."""
        self._uops = []
        self._uop_index = {}

    def kernel(self, uops) -> tuple[int, int]:
        """Register a micro-op kernel (list of ``(dst, src, wgt)``); return ``(bgn, end)``."""
        key = tuple(tuple(u) for u in uops)
        if key not in self._uop_index:
            bgn = len(self._uops)
            self._uops.extend(Uop(*u) for u in key)
            self._uop_index[key] = (bgn, len(self._uops))
        return self._uop_index[key]

    def uop_count(self) -> int:
        return len(self._uops)

    def end_op(self, start: int, name: str = "operator"):
        """Flush held-back instructions, place the kernels registered since :meth:`begin_op`
        in DRAM and insert one LOAD UOP at instruction index ``start`` (the operator's first
        instruction: the compute module runs in order, so every GEMM/ALU of the operator sees
        them)."""
        self.flush()
        if not self._uops:
            return
        if len(self._uops) > self.cfg.uop_depth:
            raise LoweringError(f"{name}: {len(self._uops)} micro-ops do not fit the micro-op "
                                f"buffer ({self.cfg.uop_depth})")
        blob = np.frombuffer(encode_uops(self._uops, self.cfg), np.uint8)
        addr = self.const(MemType.UOP, blob)
        self.b.load(MemType.UOP, 0, addr, 1, len(self._uops))
        self.insns.insert(start, self.insns.pop())

    # --- virtual threads ---------------------------------------------------------------------
    def load_step(self) -> int:
        """Begin the LOADs of a step; returns the INP/WGT half (0 or 1) it must use."""
        self._mark = len(self.insns)
        return self._step % 2

    def end_load_step(self):
        first = self._mark
        if first == len(self.insns):
            self.b.sync("load")
        for insn in self.insns[first:]:
            assert insn.opcode is Opcode.LOAD and insn.memory_type in _LOAD_MODULE
        if self._step >= 2:
            self._flag(first, pop_next_dep=True)
        if self._barrier_token:
            # Weights never depend on earlier stores: only the first INP load waits for them.
            idx = next((i for i in range(first, len(self.insns))
                        if self.insns[i].memory_type is MemType.INP), first)
            assert self._step == 0 and not self.insns[idx].pop_next_dep
            self._flag(idx, pop_next_dep=True)
            self._barrier_token = False
        self._flag(len(self.insns) - 1, push_next_dep=True)
        self._step += 1

    def use_step(self):
        """Begin the compute instructions that read the most recent load step."""
        self._use_mark = len(self.insns)

    def end_use_step(self):
        first = self._use_mark
        if first == len(self.insns):
            self.b.sync("compute")
        self._flag(first, pop_prev_dep=True)
        self._flag(len(self.insns) - 1, push_prev_dep=True)

    def tile(self) -> int:
        """Begin the compute instructions of an output tile (its prologue); returns its
        ACC/OUT half, which is also the ACC bank all its accumulators must lie in."""
        self._tile_mark = len(self.insns)
        self._body_mark = self._epi_mark = None
        return self._tile % 2

    def tile_body(self):
        """End of the tile's prologue (reset / re-initialisation): its load steps and GEMMs
        follow. The previous tile's held-back epilogue goes right here, interleaved."""
        self._body_mark = len(self.insns)

    def tile_epilogue(self):
        """End of the tile's body: its ALU epilogue follows (held back, see the module doc)."""
        self._epi_mark = len(self.insns)

    def end_tile_compute(self):
        first = self._tile_mark
        if first == len(self.insns):
            self.b.sync("compute")
        if self._tile >= 2:
            self._flag(first, pop_next_dep=True)
        self._flag(len(self.insns) - 1, push_next_dep=True)

    def part_stores(self):
        """Begin STOREs of a part of the tile whose epilogue passes are complete (before the
        rest of the epilogue): the last compute instruction so far pushes compute->store,
        so these stores start while the ALU still works on the rest of the tile."""
        self._flag(len(self.insns) - 1, push_next_dep=True)
        self._part_mark = len(self.insns)

    def end_part_stores(self):
        first = self._part_mark
        if first == len(self.insns):
            self.b.sync("store")
        self._flag(first, pop_prev_dep=True)

    def stores(self):
        """Begin the STOREs of the current tile (its last ones)."""
        self._store_mark = len(self.insns)

    def end_stores(self):
        first = self._store_mark
        if first == len(self.insns):
            self.b.sync("store")
        self._flag(first, pop_prev_dep=True)
        self._flag(len(self.insns) - 1, push_prev_dep=True)
        self._tile += 1
        self._reorder()

    # --- lane scheduling ---------------------------------------------------------------------
    def _reorder(self):
        """After a tile's stores: place the previous tile's held-back part into this tile's
        body, and hold this tile's epilogue + stores back."""
        ins = self.insns
        body, epi = self._body_mark, self._epi_mark
        marked = body is not None and epi is not None and epi < self._store_mark
        if not marked:
            if self._pending is not None:  # an unmarked tile: emit the held part before it
                ins[self._tile_mark:self._tile_mark] = self._pending
                self._pending = None
            return
        tail = ins[body:]
        del ins[body:]
        cut = epi - body
        body_part, held = tail[:cut], tail[cut:]
        if self._pending is not None:
            ins.extend(self._merge(self._pending, body_part))
        else:
            ins.extend(body_part)
        self._pending = held
        self._body_mark = self._epi_mark = None

    def _merge(self, held: list, body: list) -> list:
        """``held`` (a tile's epilogue with its stores) interleaved with ``body``: each compute
        instruction goes where it would start if both lanes ran their own instructions back
        to back from the same moment (the epilogue first on ties); loads and stores stay as
        early as their own sequence has them."""
        if not self.interleave:
            return held + body
        cfg = self.cfg
        out, i, t_alu, t_gemm = [], 0, 0, 0

        def compute(x):
            return x.opcode in (Opcode.GEMM, Opcode.ALU)
        for x in body:
            if compute(x):
                while i < len(held) and (not compute(held[i]) or t_alu <= t_gemm):
                    out.append(held[i])
                    if compute(held[i]):
                        t_alu += insn_cycles(cfg, held[i])
                    i += 1
                t_gemm += insn_cycles(cfg, x)
            out.append(x)
        return out + held[i:]

    def flush(self):
        """Emit the held-back epilogue and stores (end of an operator, barriers)."""
        if self._pending is not None:
            self.insns.extend(self._pending)
            self._pending = None

    def barrier(self, defer: bool = True):
        """Drain both pipelines: later loads see every earlier store (see the module doc).

        With ``defer`` the load module pops the barrier token only at the next operator's
        first INP load, so that operator's first weights load while the last stores drain.
        """
        self.flush()
        pending_s2c = min(self._tile, 2)
        pending_c2l = min(self._step, 2)
        for _ in range(max(pending_s2c - 1, 0)):
            self.b.sync("compute", pop_next_dep=True)
        self.b.sync("compute", pop_next_dep=pending_s2c > 0, push_prev_dep=True)
        for _ in range(pending_c2l + (0 if defer else 1)):
            self.b.sync("load", pop_next_dep=True)
        self._barrier_token = defer
        self._tile = self._step = 0

    def finish(self):
        """Barrier, hand the load module's last token to compute, FINISH."""
        self.barrier(defer=False)  # ends with a load-module sync instruction
        self._flag(len(self.insns) - 1, push_next_dep=True)
        self.b.sync("compute", pop_prev_dep=True)
        self.b.finish()
