"""Analytical cost model of the accelerator, used to choose tilings and to estimate cycles.

Per instruction (``insn_cycles``):

* LOAD / STORE: a fixed DRAM latency per instruction, a small per-row overhead, one cycle per
  AXI beat of data (``bytes / axi_bytes``) and one cycle per padded element written;
* GEMM / ALU: one micro-op per cycle (``iter_out * iter_in * (uop_end - uop_bgn)``), two for
  a tensor-operand ALU micro-op when the configuration's ACC SRAM has one read port (the RTL's
  choice on small parts, ``hw/compute.acc_read_ports_for``), plus a pipeline fill overhead;
* token-only instructions and FINISH: one cycle.

:func:`simulate` runs an instruction stream through a model of the decoupled load / compute /
store modules (in-order fetch into bounded command queues, the four token queues), so the
overlap that the two virtual threads buy is part of the estimate. The lowering reports
``est_cycles`` from the RTL-calibrated ``pyvta.sim.timing`` when it is importable and uses this
module's simpler model only as a fallback and to compare tilings.

:func:`conv_tile_cost` is the closed-form estimate used to compare tilings of one convolution.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field

from ..hw.isa import MemType, Opcode

__all__ = ["DRAM_LATENCY", "ROW_OVERHEAD", "PIPE_OVERHEAD", "FETCH_CYCLES", "insn_cycles",
           "alu_tensor_cycles", "last_part",
           "simulate", "Timing", "conv_tile_cost", "compute_bound"]

#: Cycles from a DMA request to its first data beat (and store acknowledge).
DRAM_LATENCY = 32
#: Cycles of overhead per row of a 2-D LOAD/STORE (a new burst).
ROW_OVERHEAD = 2
#: Cycles to fill the GEMM/ALU pipelines per instruction.
PIPE_OVERHEAD = 4
#: Cycles for fetch to read and dispatch one 128-bit instruction.
FETCH_CYCLES = 2


def _elem_bytes(cfg, mt):
    return {MemType.UOP: cfg.uop_elem_bytes, MemType.INP: cfg.inp_elem_bytes,
            MemType.WGT: cfg.wgt_elem_bytes, MemType.ACC: cfg.acc_elem_bytes,
            MemType.OUT: cfg.out_elem_bytes}[mt]


def insn_cycles(cfg, insn) -> int:
    """Estimated execution cycles of one instruction on its module."""
    op = insn.opcode
    if op in (Opcode.LOAD, Opcode.STORE):
        if insn.x_size == 0 or insn.y_size == 0:
            return 1
        eb = _elem_bytes(cfg, insn.memory_type)
        data = insn.x_size * insn.y_size * eb
        pads = 0
        if op is Opcode.LOAD:
            rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
            cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
            pads = rows * cols - insn.x_size * insn.y_size
        return DRAM_LATENCY + ROW_OVERHEAD * insn.y_size + math.ceil(data / cfg.axi_bytes) + pads
    if op in (Opcode.GEMM, Opcode.ALU):
        per_uop = alu_tensor_cycles(cfg) if op is Opcode.ALU and not insn.use_imm \
            and not insn.reset_reg else 1
        return PIPE_OVERHEAD + per_uop * insn.iter_out * insn.iter_in * \
            (insn.uop_end - insn.uop_bgn)
    return 1


def alu_tensor_cycles(cfg) -> int:
    """Cycles per tensor-operand ALU micro-op: 1 with two ACC read ports, else 2."""
    try:
        from ..hw.compute import acc_read_ports_for
    except ImportError:
        return 1
    return 1 if acc_read_ports_for(cfg) >= 2 else 2


def _module(insn) -> str:
    if insn.opcode is Opcode.LOAD:
        return "load" if insn.memory_type in (MemType.INP, MemType.WGT) else "compute"
    if insn.opcode is Opcode.STORE:
        return "store"
    return "compute"


_POPS = {"load": {"pop_next_dep": "c2l"}, "compute": {"pop_prev_dep": "l2c", "pop_next_dep": "s2c"},
         "store": {"pop_prev_dep": "c2s"}}
_PUSHES = {"load": {"push_next_dep": "l2c"},
           "compute": {"push_prev_dep": "c2l", "push_next_dep": "c2s"},
           "store": {"push_prev_dep": "s2c"}}


@dataclass
class Timing:
    """Result of :func:`simulate`: total cycles, per-instruction end times, module busy time."""
    total: int
    end: list
    busy: dict = field(default_factory=dict)


class _Lanes:
    """The two-lane compute module (``docs/scheduling.md``): in-order dispatch of one
    instruction per cycle; GEMM lane G and ALU/reset lane A, each with an executing and a
    one-entry next register; an instruction waits for the other lane's in-flight instructions
    on its banks; pushes fire in order once everything dispatched up to them is complete
    (pending-push FIFO of ``PUSH_FIFO`` entries); LOAD UOP/ACC with data and FINISH wait for
    both lanes to be quiet."""

    PUSH_FIFO = 4  # the RTL's pending-push FIFO (hw/compute.py)

    def __init__(self):
        try:
            from ..hw.compute import _PUSH_FIFO_DEPTH
            self.PUSH_FIFO = _PUSH_FIFO_DEPTH
        except ImportError:
            pass
        self.disp = 0                       # earliest dispatch of the next instruction
        self.ends = {"G": [0, 0], "A": [0, 0]}
        self.bank_end = {"G": [0, 0], "A": [0, 0]}
        self.done = 0                       # completion of everything dispatched so far
        self.fires = [0] * self.PUSH_FIFO

    def run(self, insn, t, cost, mask, pushes) -> tuple[int, int, int]:
        """Dispatch at or after ``t``; returns ``(dispatch, end, push fire time)``."""
        t = max(t, self.disp)
        op = insn.opcode
        if op in (Opcode.GEMM, Opcode.ALU) and mask:
            lane = "A" if op is Opcode.ALU or insn.reset_reg else "G"
            other = "G" if lane == "A" else "A"
            t = max(t, self.ends[lane][-2],
                    *[self.bank_end[other][b] for b in (0, 1) if mask >> b & 1])
            if pushes:
                t = max(t, self.fires[-self.PUSH_FIFO])
            end = max(t, self.ends[lane][-1]) + cost
            self.ends[lane].append(end)
            for b in (0, 1):
                if mask >> b & 1:
                    self.bank_end[lane][b] = end
            self.done = max(self.done, end)
            self.disp = t + 1
        elif op is Opcode.FINISH or (op is Opcode.LOAD and insn.x_size and insn.y_size):
            t = max(t, self.done, self.fires[-1] if op is Opcode.FINISH else 0)
            end = t + cost
            self.done = self.disp = end
        else:                               # token-only (and empty GEMM/ALU)
            end = t + 1
            self.disp = t + 1
            self.done = max(self.done, end)
        fire = end
        if pushes:
            fire = max(self.done, self.fires[-1])
            self.fires.append(fire)
        return t, end, fire


def simulate(cfg, insns, cycles=None, banks=None) -> Timing:
    """Estimate the cycles of a program on the decoupled architecture (see the module doc).

    ``cycles(cfg, insn)`` overrides :func:`insn_cycles`. With ``banks`` (per instruction, the
    ACC bank-set mask: ``lower.banks.bank_sets``) the compute module is modelled as two lanes;
    without it as one in-order pipeline.
    """
    cycles = cycles or insn_cycles
    lanes = _Lanes() if banks is not None else None
    n = len(insns)
    mods = [_module(i) for i in insns]
    cost = [cycles(cfg, i) for i in insns]
    queues = {m: collections.deque() for m in ("load", "compute", "store")}
    started = {m: [] for m in queues}
    dispatched = {m: 0 for m in queues}
    tokens = {t: collections.deque() for t in ("l2c", "c2l", "c2s", "s2c")}
    free = {m: 0 for m in queues}
    busy = {m: 0 for m in queues}
    dispatch_t = [0] * n
    end = [0] * n
    pc, last_fetch, depth = 0, 0, cfg.cmd_queue_depth
    done = 0
    while done < n:
        progress = False
        while pc < n:
            m = mods[pc]
            k = dispatched[m]
            if k - len(started[m]) >= depth:
                break
            slot = started[m][k - depth] if k >= depth else 0
            last_fetch = max(last_fetch + FETCH_CYCLES, slot)
            dispatch_t[pc] = last_fetch
            queues[m].append(pc)
            dispatched[m] += 1
            pc += 1
            progress = True
        for m, q in queues.items():
            while q:
                idx = q[0]
                insn = insns[idx]
                pops = [t for f, t in _POPS[m].items() if getattr(insn, f)]
                if any(not tokens[t] for t in pops):
                    break
                ready = max([dispatch_t[idx]] + [tokens[t].popleft() for t in pops])
                pushes = [t for f, t in _PUSHES[m].items() if getattr(insn, f)]
                if lanes is not None and m == "compute":
                    start, end[idx], fire = lanes.run(insn, ready, cost[idx], banks[idx],
                                                      pushes)
                else:
                    start = max(free[m], ready)
                    end[idx] = fire = start + cost[idx]
                    free[m] = end[idx]
                busy[m] += cost[idx]
                started[m].append(start)
                for t in pushes:
                    tokens[t].append(fire)
                end[idx] = max(end[idx], fire)
                q.popleft()
                done += 1
                progress = True
        if not progress:
            raise RuntimeError(f"cost model: the program deadlocks at instruction {pc}")
    return Timing(max(end) if end else 0, end, busy)


def compute_bound(cfg, macs: int) -> float:
    """Cycles if the GEMM core did useful MACs every cycle."""
    return macs / cfg.macs_per_cycle


def last_part(tob: int, th: int) -> tuple[str | None, int]:
    """How a convolution tile's epilogue is split when the ALU lane is the busier one:
    ``("ob", k)`` (the last ``k`` output blocks), ``("row", k)`` (the last ``k`` rows of every
    block) or ``(None, 0)``; the last part is as close to a quarter of the tile as possible."""
    opts = [(abs(k / tob - 0.25), 0, "ob", k) for k in range(1, tob)] + \
        [(abs(k / th - 0.25), 1, "row", k) for k in range(1, th)]
    if not opts:
        return None, 0
    _, _, how, k = min(opts)
    return how, k


def conv_tile_cost(cfg, g, ncb, th, tw, tob, tcb, delta, n_params, n_alu, tkh=None,
                   lanes: bool = True) -> float:
    """Closed-form cycles of a convolution tiled as ``th x tw x tob`` with ``tcb``-block steps.

    Double buffering overlaps a step's loads with the previous step's GEMM. With the two
    compute lanes (``lanes``, and per-channel vectors resident: ``n_params == 0``) a tile's ALU
    epilogue and the next tile's reset run on lane A while lane G runs GEMMs, so a tile costs
    ``max(loads, GEMMs, reset + ALU + stores + half a GEMM step)``: lane A also waits, before
    the reset of tile ``t+2``, for the stores of tile ``t`` (same bank), which wait for the
    compute->store push (it fires once the GEMM dispatched before it has completed). Otherwise (one pipeline, or per-tile
    LOAD ACC of the vectors, which waits for both lanes) ``max(loads, GEMMs + reset + ALU)``.
    Partial edge tiles are accounted for by using the average tile size.
    """
    nb = -(-g.n // cfg.batch)
    n_rt, n_ct = -(-g.ho // th), -(-g.wo // tw)
    n_ot = -(-len(ncb) // tob)
    th_a, tw_a, tob_a = g.ho / n_rt, g.wo / n_ct, len(ncb) / n_ot
    ncb_a = sum(ncb) / len(ncb)
    tkh = tkh or g.kh
    steps = -(-max(ncb) // tcb)
    tcb_a = ncb_a / steps
    steps *= -(-g.kh // tkh)
    kk = tkh * g.kw
    r = (th_a - 1) * g.sh + (tkh - 1) * g.dh + 1
    cw = (tw_a - 1) * g.sw + (g.kw - 1) * g.dw + 1
    nblk = (tob_a - 1) * delta + tcb_a
    ab = cfg.axi_bytes
    load_step = (nblk + 1) * DRAM_LATENCY + nblk * r * ROW_OVERHEAD + \
        (nblk * r * cw * cfg.inp_elem_bytes + tob_a * tcb_a * kk * cfg.wgt_elem_bytes) / ab
    p = th_a * tw_a
    gemm_step = tob_a * p * tcb_a * kk + PIPE_OVERHEAD
    extra = (1 + n_alu) * (tob_a * p + PIPE_OVERHEAD) + \
        n_params * (DRAM_LATENCY + tob_a * cfg.acc_elem_bytes / ab)
    store = tob_a * (DRAM_LATENCY + th_a * ROW_OVERHEAD + p * cfg.out_elem_bytes / ab)
    if lanes and not n_params:
        # Lane A waits for the last stores of the tile two back (a quarter of them when the
        # lowering splits the epilogue) and its compute->store push fires only once the GEMM
        # step dispatched before it has completed (half a step on average).
        how, k = last_part(tob, th)
        exposed = store * (k / (tob if how == "ob" else th) if how else 1)
        tile = max(steps * load_step, steps * gemm_step + 2 * PIPE_OVERHEAD,
                   extra + exposed + gemm_step / 2)
    else:
        tile = max(steps * load_step, steps * gemm_step + extra, store)
    n_tiles = nb * n_rt * n_ct * n_ot
    return n_tiles * tile + load_step + store
