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
        """Place the kernels registered since :meth:`begin_op` in DRAM and insert one LOAD UOP
        at instruction index ``start`` (the operator's first instruction: the compute module
        runs in order, so every GEMM/ALU of the operator sees them)."""
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
        """Begin the compute instructions of an output tile; returns its ACC/OUT half."""
        self._tile_mark = len(self.insns)
        return self._tile % 2

    def end_tile_compute(self):
        first = self._tile_mark
        if first == len(self.insns):
            self.b.sync("compute")
        if self._tile >= 2:
            self._flag(first, pop_next_dep=True)
        self._flag(len(self.insns) - 1, push_next_dep=True)

    def stores(self):
        """Begin the STOREs of the current tile."""
        self._store_mark = len(self.insns)

    def end_stores(self):
        first = self._store_mark
        if first == len(self.insns):
            self.b.sync("store")
        self._flag(first, pop_prev_dep=True)
        self._flag(len(self.insns) - 1, push_prev_dep=True)
        self._tile += 1

    def barrier(self, defer: bool = True):
        """Drain both pipelines: later loads see every earlier store (see the module doc).

        With ``defer`` the load module pops the barrier token only at the next operator's
        first INP load, so that operator's first weights load while the last stores drain.
        """
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
