"""Timing model: estimated cycles of an instruction stream on the pyvta RTL.

:func:`estimate_cycles` walks a program the way the hardware (``hw/core.py``) runs it: a fetch
stage reads instructions by DMA and dispatches them in order into three bounded command
queues; the load, compute and store modules each execute their queue in order, block on the
four dependency-token queues and share one DRAM read channel; the store module owns the write
channel. It is an event model at instruction granularity, not a cycle-by-cycle simulation: it
needs no DRAM contents and costs about 0.2 ms per instruction (a few passes, see
:meth:`TimingModel.estimate`), whatever the number of micro-ops or beats.

What the model knows about the RTL (the constants in :class:`_Constants` name the hardware
behaviour they stand for; their values were measured on the Verilator simulation with
micro-benchmarks, and ``bench/timing_accuracy.py`` checks the whole model):

* DRAM (the AXI4 model of ``sim/rtl``): every read burst's first beat comes ``dram_latency``
  cycles after its address; the read channel (shared by fetch, load and compute) and the
  write channel each move one ``cfg.axi_bytes`` beat per cycle, or ``1 - stall/256`` of one
  with random stalls of density ``dram_stall``. The AXI master grants the load and compute
  ports round-robin, a 16-beat burst at a time, up to a 128-beat receive FIFO per port, and
  the memory answers in grant order: a transfer first waits for the beats already granted to
  the others, then shares the channel equally with them. The fetch port is served in the
  background: only when no other port asks, or after it waited ``hw.top.FETCH_AGE`` cycles
  (so it keeps ``16 / (16 + FETCH_AGE)`` of a busy channel), and with at most
  ``hw.top.FETCH_INFLIGHT`` of its beats granted ahead of a data burst. (The first pass
  shares equally; the refinement passes apply the priority.)
* Fetch: ``16 / axi_bytes`` beats per instruction, one dispatch per instruction's beats; it
  reads ahead as far as its receive FIFO and the command queues (``cfg.cmd_queue_depth``)
  allow; its read-ahead takes the read channel in the background (a data transfer waits for
  at most ``FETCH_INFLIGHT`` beats of instructions already granted).
* Load / store: a fixed handshake overhead, one DRAM latency (the next instruction's requests
  are only issued once the current one is done), one cycle per data beat and per padding
  element, one DMA request per row at most every other cycle; a STORE also waits for its last
  write response.
* Compute (``sim/lanes.py``): two in-order lanes, G for GEMMs and A for ALU instructions and
  GEMM resets, each one micro-op per cycle (two for a tensor-operand ALU micro-op when the
  ACC SRAM has a single read port) with a one-entry "next" register, so a lane issues
  back to back; a scanner reads every GEMM/ALU instruction's micro-ops (one per cycle, a few
  instructions ahead of dispatch) for its ACC bank set; instructions dispatch in order, one
  per cycle, into their lane once the other lane has nothing in flight on their banks;
  token pushes are deferred until everything dispatched before them has written its
  results; LOAD UOP/ACC and FINISH wait for both lanes to be empty, and a micro-op load
  writes a bus beat of micro-ops per cycle when the DRAM and buffer indices agree modulo the
  micro-ops per beat (else a run per cycle: ``hw.loader.uop_load_cycles``). The bank sets come from the micro-ops in the DRAM image
  (``dram=``); without it every GEMM/ALU instruction counts as touching both banks.

Not modelled: the token queues' capacity (a push never blocks; programs that keep more tokens
in flight than ``cfg.dep_queue_depth`` run slower on the RTL than estimated) and the exact
stall pattern (stalls are an average bandwidth cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hw.config import HwConfig, load_config
from ..hw.isa import INSN_BYTES, AluInsn, GemmInsn, MemInsn, MemType, Opcode, decode_program
from ..hw.loader import uop_load_cycles
from ..hw.top import FETCH_AGE, FETCH_INFLIGHT
from .lanes import ComputeLanes, UopShadow, bank_set, lane_of

__all__ = ["TimingError", "InsnTiming", "ModuleTiming", "TimingReport", "TimingModel",
           "estimate_cycles", "DEFAULT_DRAM_LATENCY"]

#: DRAM latency (cycles from a read address to its first data beat) assumed by default: the
#: value the RTL simulation's DRAM model uses unless told otherwise (``sim/rtl.RtlJob``).
DEFAULT_DRAM_LATENCY = 8

_LOAD, _COMPUTE, _STORE = "load", "compute", "store"
MODULES = (_LOAD, _COMPUTE, _STORE)


class TimingError(ValueError):
    """The program cannot be timed (bad argument, or it can never finish)."""


@dataclass(frozen=True)
class _Constants:
    """Cycle counts of the RTL's fixed overheads (see the module docstring)."""
    #: From the start pulse to the first instruction sitting at a module's queue output,
    #: excluding the DRAM latency.
    fetch_first: int = 10
    #: From the start pulse to the first instruction beat on the DRAM read channel,
    #: excluding the DRAM latency.
    fetch_start: int = 4
    #: Receive FIFO of each DMA read port, in beats (``hw/top.READ_FIFO_DEPTH``).
    fetch_fifo_beats: int = 128
    #: Cycles from a dispatch into a command queue to the entry being visible to the module.
    queue_latency: int = 2
    #: Cycles after a module takes an entry before fetch sees the room in the queue.
    queue_free: int = 1
    #: From a loader's start to its first data beat being consumed (plus the DRAM latency).
    dma_first: int = 6
    #: From the last data beat consumed to the module's next instruction taken (load module).
    load_tail: int = 3
    #: Compute: from the last data of a LOAD UOP/ACC to the next instruction decoded.
    cload_tail: int = 3
    #: A tile loader's SRAM write one cycle after its last beat (the micro-op loader writes
    #: in the same cycle).
    tile_write: int = 1
    #: Store: from the POP cycle to the first write beat.
    store_first: int = 3
    #: Write burst slot turnaround beyond its beats and the response latency.
    write_turn: int = 1
    #: Store: after the last write response to the next instruction taken.
    store_tail: int = 3
    #: Compute: from the dispatch of a GEMM/ALU to its first micro-op issued (idle lane).
    issue_delay: int = 2
    #: Compute, lane G (GEMM): cycles from the last micro-op issue slot to the last ACC/OUT
    #: write (``hw/lanes``: the write is ``n + 3 + GemmCore.LATENCY`` after the first slot).
    drain_g: int = 7
    #: Compute, lane A (ALU, GEMM reset): the same (``n + 3``).
    drain_a: int = 3
    #: Compute: scanner cycles from its first stage's last cycle to the head of its output
    #: FIFO (``hw/scanner``: ``n + 3`` from entering it).
    scan_latency: int = 3
    #: Compute: entries of the scanner's output FIFO.
    scan_fifo: int = 2
    #: Compute: a bank conflict resolves this many cycles after the other lane's last write.
    bank_gap: int = 1
    #: Compute: a deferred push fires this many cycles after the last write it waits for.
    push_delay: int = 1
    #: Compute: entries of the pending-push FIFO.
    push_fifo: int = 4


CONSTANTS = _Constants()
#: Beats per AXI burst (``hw/top.MAX_BURST``).
_BURST_BEATS = 16
#: The fetch port's floor share of a busy read channel: one burst per ``FETCH_AGE`` cycles of
#: waiting (``hw/top.py``), and its beats in flight at the memory.
_FETCH_MIN_SHARE = _BURST_BEATS / (_BURST_BEATS + FETCH_AGE)
_FETCH_INFLIGHT = FETCH_INFLIGHT
#: Read bursts the DRAM model holds between address and data (its 16-entry address queue
#: plus the bursts in the AXI master's and the model's pipeline registers), and the cycles
#: a burst's slot is held beyond the latency. Measured: rows of 1 to 4 beats at latencies
#: 50 to 200 stream one burst per (latency + 8) / 21 cycles.
_DRAM_READS = 21
_DRAM_READ_TURN = 8
#: Write bursts in flight between address and response (``hw/axi.AxiMaster``'s default).
_MAX_WRITE_BURSTS = 8
#: Cycles between two DMA requests of one port (the AXI master takes a request, then grants
#: its bursts, then takes the next).
_ROW_REQUEST_CYCLES = 2


@dataclass
class InsnTiming:
    """When one instruction ran (cycle numbers from the start of the run)."""
    index: int
    module: str
    kind: str
    #: Dispatched by fetch into the module's command queue.
    dispatch: int
    #: Taken by the module (decode).
    start: int
    #: The module can take its next instruction (``end - start`` is the busy time).
    end: int
    #: Cycles spent waiting for dependency tokens.
    token_stall: int = 0
    #: Cycles spent waiting for DRAM (latency and channel contention).
    dma_stall: int = 0
    #: Micro-op issue cycles (GEMM/ALU) or data beats moved (LOAD/STORE).
    work: int = 0
    #: Cycle the instruction's work is complete (its last micro-op written to the ACC, its
    #: last beat in SRAM or DRAM); for a GEMM/ALU that pushes no token this is after ``end``.
    done: int = 0
    #: GEMM/ALU: the compute lane that ran it ("G" or "A"; "" for other instructions and
    #: instructions without micro-op iterations) and its first micro-op issue cycle.
    lane: str = ""
    issue: int = 0


@dataclass
class ModuleTiming:
    """Totals of one module: busy cycles and what it waited for.

    ``busy`` counts what the RTL's ``<module>_busy`` counter counts: cycles with an
    instruction taken or waiting at the head of the module's queue (and, for compute, cycles
    with micro-ops still in the pipeline), stalls included."""
    insns: int = 0
    busy: int = 0
    token_stall: int = 0
    dma_stall: int = 0
    work: int = 0


@dataclass
class TimingReport:
    """The estimate for a whole program."""
    cfg: HwConfig
    cycles: int
    dram_latency: int
    insns: list = field(default_factory=list)
    modules: dict = field(default_factory=dict)
    #: Beats moved on the DRAM read and write channels.
    read_beats: int = 0
    write_beats: int = 0
    gemm_uops: int = 0
    alu_uops: int = 0

    @property
    def macs_per_cycle(self) -> float:
        """Achieved GEMM throughput in multiply-accumulates per cycle."""
        return self.gemm_uops * self.cfg.macs_per_cycle / max(1, self.cycles)

    def summary(self) -> str:
        """One line per module with busy and stall cycles."""
        lines = [f"{self.cycles} cycles (estimated, DRAM latency {self.dram_latency}); "
                 f"{self.gemm_uops} GEMM + {self.alu_uops} ALU micro-ops; "
                 f"{self.read_beats} read / {self.write_beats} write beats"]
        for name, m in self.modules.items():
            lines.append(f"  {name:<8} {m.insns:>7} insns  busy {m.busy:>9}  "
                         f"token stall {m.token_stall:>9}  dma stall {m.dma_stall:>9}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "dram_latency": self.dram_latency,
                "read_beats": self.read_beats, "write_beats": self.write_beats,
                "gemm_uops": self.gemm_uops, "alu_uops": self.alu_uops,
                "modules": {k: vars(v).copy() for k, v in self.modules.items()}}


class _Channel:
    """A DRAM channel that moves one beat per cycle, shared fairly by concurrent transfers.

    The AXI master grants the ports round-robin, a burst at a time, so transfers that overlap
    in time share the channel about equally. This fluid model keeps the channel's future as
    disjoint segments ``[start, end)`` each shared by ``k`` transfers: a new transfer gets
    every free cycle and ``1 / (k + 1)`` of a shared one. The transfers already reserved keep
    their completion times (they were committed before this one was known, as modules are
    simulated ahead of each other up to their next dependency), but the service they lose is
    appended as busy time after the new transfer, so the channel's total work is conserved.
    """

    def __init__(self):
        self.segs = []  # sorted, disjoint [start, end, sharers]

    def prune(self, horizon: float):
        """Forget segments that end before ``horizon`` (no transfer starts before it)."""
        i = 0
        while i < len(self.segs) and self.segs[i][1] <= horizon:
            i += 1
        if i:
            del self.segs[:i]

    def reserve(self, t: float, beats: int) -> tuple[int, int]:
        """Transfer ``beats`` from cycle ``t``: returns (first beat cycle, end of the last)."""
        if beats <= 0:
            return int(t), int(t)
        segs = self.segs
        out, i, cur, left = [], 0, float(t), float(beats)
        while i < len(segs) and segs[i][1] <= cur:
            out.append(segs[i])
            i += 1
        first = None
        stolen = 0.0
        while left > 1e-9:
            if i < len(segs) and segs[i][0] <= cur:
                s, e, k = segs[i]
                if s < cur:  # split: the part before cur is untouched
                    out.append([s, cur, k])
                cap = (e - cur) / (k + 1)
                if first is None:
                    first = cur
                if left <= cap:
                    end = cur + left * (k + 1)
                    out.append([cur, end, k + 1])
                    stolen += left
                    segs[i] = [end, e, k]
                    cur, left = end, 0.0
                else:
                    out.append([cur, e, k + 1])
                    stolen += cap
                    left -= cap
                    cur = e
                    i += 1
            else:
                gap_end = segs[i][0] if i < len(segs) else float("inf")
                if first is None:
                    first = cur
                take = min(left, gap_end - cur)
                out.append([cur, cur + take, 1])
                cur += take
                left -= take
        finish = cur
        rest = segs[i:]
        # The incumbents' lost service continues after this transfer, in free cycles.
        merged = []
        for seg in rest:
            if stolen > 1e-9 and seg[0] > cur:
                take = min(stolen, seg[0] - cur)
                merged.append([cur, cur + take, 1])
                stolen -= take
            merged.append(seg)
            cur = max(cur, seg[1])
        if stolen > 1e-9:
            merged.append([cur, cur + stolen, 1])
        self.segs = [seg for seg in out + merged if seg[1] - seg[0] > 1e-9]
        return int(first), int(-(-finish // 1))


def _route(insn) -> str:
    if insn.opcode is Opcode.LOAD:
        return _LOAD if insn.memory_type in (MemType.INP, MemType.WGT) else _COMPUTE
    if insn.opcode is Opcode.STORE:
        return _STORE
    return _COMPUTE


def _kind(insn) -> str:
    op = insn.opcode
    if op in (Opcode.LOAD, Opcode.STORE):
        return f"{op.name}.{insn.memory_type.name}"
    if op is Opcode.ALU:
        return f"ALU.{insn.alu_opcode.name}"
    return op.name


class TimingModel:
    """The timing model of one configuration.

    Parameters
    ----------
    cfg : HwConfig or str
    dram_latency : int
        Cycles from a DRAM read address to its first data beat (and from a write burst's
        last beat to its response).
    acc_read_ports : 1, 2 or None
        ACC SRAM read ports of the compute module (``None``: what the RTL picks for ``cfg``).
    """

    def __init__(self, cfg=None, *, dram_latency: int = DEFAULT_DRAM_LATENCY,
                 dram_stall: int = 0, acc_read_ports: int | None = None, constants: _Constants = CONSTANTS):
        self.cfg = cfg = load_config(cfg)
        if isinstance(dram_latency, bool) or not isinstance(dram_latency, int) \
                or not 0 <= dram_latency < 1 << 16:
            raise TimingError(f"dram_latency must be an integer in [0, 65535], "
                              f"not {dram_latency!r}")
        if acc_read_ports is None:
            from ..hw.compute import acc_read_ports_for
            acc_read_ports = acc_read_ports_for(cfg)
        if acc_read_ports not in (1, 2):
            raise TimingError(f"acc_read_ports must be 1 or 2, not {acc_read_ports!r}")
        if isinstance(dram_stall, bool) or not isinstance(dram_stall, int) \
                or not 0 <= dram_stall <= 255:
            raise TimingError(f"dram_stall must be an integer in [0, 255], not {dram_stall!r}")
        self.dram_latency = dram_latency
        self.dram_stall = dram_stall
        # A channel that drops READY/VALID with probability stall/256 in each cycle needs
        # 1 / (1 - stall/256) cycles per beat on average.
        self._beat_cost = 256 / (256 - dram_stall)
        # ... and each handshake (address, first data, write response) waits
        # p / (1 - p) cycles on average: the DRAM latency seen by one transfer grows.
        self._stall_wait = dram_stall / (256 - dram_stall)
        self.acc_read_ports = acc_read_ports
        self.k = constants
        ab = cfg.axi_bytes
        self._insn_beats = max(1, INSN_BYTES // ab)      # beats per instruction
        self._insns_per_beat = max(1, ab // INSN_BYTES)
        self._elem_bytes = {MemType.UOP: cfg.uop_elem_bytes, MemType.INP: cfg.inp_elem_bytes,
                            MemType.WGT: cfg.wgt_elem_bytes, MemType.ACC: cfg.acc_elem_bytes,
                            MemType.OUT: cfg.out_elem_bytes}

    # --- per-instruction costs ----------------------------------------------------------------
    def _tile_load(self, insn) -> tuple[int, int, int]:
        """(data beats, consumer cycles before the first data, consumer cycles in all)."""
        beats_per_elem = max(1, self._elem_bytes[insn.memory_type] // self.cfg.axi_bytes)
        pads = (insn.x_pad_0, insn.x_pad_1, insn.y_pad_0, insn.y_pad_1)
        if insn.memory_type is MemType.WGT:
            pads = (0, 0, 0, 0)  # the RTL ignores (and reports) WGT padding
        xp0, xp1, yp0, yp1 = pads
        cols = xp0 + insn.x_size + xp1
        data = insn.y_size * insn.x_size
        total = (yp0 + insn.y_size + yp1) * cols
        beats = data * beats_per_elem
        # One DMA request per row, accepted every other cycle at best: short rows are
        # request-bound.
        span = max(beats, self._burst_bound(insn.y_size, insn.x_size * beats_per_elem),
                   _ROW_REQUEST_CYCLES * insn.y_size - 1) + total - data
        return beats, yp0 * cols + xp0, span

    def _uop_load(self, insn) -> tuple[int, int, int]:
        ab = self.cfg.axi_bytes
        upb = ab // 4
        beats = 0
        for y in range(min(insn.y_size, 2)):  # rows differ only by their start offset
            first = (insn.dram_base + y * insn.x_stride) % upb
            beats += -(-(first + insn.x_size) // upb)
        if insn.y_size > 2:
            beats += (insn.y_size - 2) * (-(-(insn.x_size + upb - 1) // upb))
        # The loader writes up to a beat of micro-ops per cycle (see ``UopLoader``).
        rows = insn.y_size if insn.y_size <= 2 * upb else upb  # the row pattern repeats
        writes = sum(uop_load_cycles(upb, insn.dram_base + y * insn.x_stride,
                                     insn.sram_base + y * insn.x_size, insn.x_size)
                     for y in range(rows))
        if rows < insn.y_size:
            writes = writes * insn.y_size // rows
        return beats, 0, max(writes, _ROW_REQUEST_CYCLES * insn.y_size - 1,
                             self._burst_bound(insn.y_size, -(-beats // insn.y_size)))

    def _burst_bound(self, rows: int, row_beats: int) -> int:
        """Cycles to stream ``rows`` DRAM rows of ``row_beats`` beats when the memory holds
        at most ``_DRAM_READS`` bursts between address and data: short rows at a long
        latency are bound by the latency, not by the bandwidth."""
        bursts = rows * -(-row_beats // _BURST_BEATS)
        return int((bursts - 1) * (self.dram_latency + _DRAM_READ_TURN) / _DRAM_READS)

    def _uop_count(self, insn) -> int:
        n = max(0, insn.uop_end - insn.uop_bgn) * insn.iter_out * insn.iter_in
        if isinstance(insn, AluInsn) and not insn.use_imm and self.acc_read_ports == 1:
            return 2 * n
        return n

    # --- the run ------------------------------------------------------------------------------
    #: Passes of the channel-sharing refinement (see :meth:`estimate`).
    PASSES = 4

    def estimate(self, program, dram=None) -> TimingReport:
        """Estimate a program given as bytes or a list of decoded instructions.

        ``dram``: the DRAM image the program runs on (a :class:`~pyvta.sim.dram.Dram`), read
        only for the micro-ops that LOAD UOP instructions fetch, which decide which ACC banks
        each GEMM/ALU instruction touches (see ``sim/lanes.py``); without it every GEMM/ALU
        instruction counts as touching both banks, so the two compute lanes never overlap
        and the estimate is an upper bound of their effect.

        The first pass shares the DRAM read channel with :class:`_Channel` (transfers
        committed in simulation order). Later passes replay the program with each transfer's
        sharing delay taken from an exact processor-sharing schedule of the previous pass's
        transfers (:func:`_share_delays`), until the estimate settles.
        """
        cfg = self.cfg
        if isinstance(program, (bytes, bytearray, memoryview)):
            insns = decode_program(bytes(program), cfg)
        else:
            insns = list(program)
        if not insns:
            raise TimingError("the instruction stream is empty: a program must end with FINISH")
        static = [self._static(insn) for insn in insns]
        self._banks = self._bank_sets(insns, dram)
        report, transfers = self._pass(insns, static, None)
        for _ in range(self.PASSES - 1):
            if len(transfers) < 2:
                break
            delays = _share_delays(transfers, self.k.fetch_fifo_beats)
            new, transfers = self._pass(insns, static, delays)
            settled = abs(new.cycles - report.cycles) <= max(1, report.cycles // 2000)
            report = new
            if settled:
                break
        return report

    def _static(self, insn):
        """What the passes need of one instruction: (kind, token queues popped, token queues
        pushed, cost: micro-op issue cycles or a load's (beats, lead, span))."""
        mod = _route(insn)
        if mod == _LOAD:
            pops = ["c2l"] if insn.pop_next_dep else []
            pushes = ["l2c"] if insn.push_next_dep else []
        elif mod == _STORE:
            pops = ["c2s"] if insn.pop_prev_dep else []
            pushes = ["s2c"] if insn.push_prev_dep else []
        else:
            pops = [q for q, f in (("l2c", insn.pop_prev_dep), ("s2c", insn.pop_next_dep)) if f]
            pushes = [q for q, f in (("c2l", insn.push_prev_dep), ("c2s", insn.push_next_dep))
                      if f]
        cost = None
        if isinstance(insn, (GemmInsn, AluInsn)):
            cost = self._uop_count(insn)
        elif insn.opcode is Opcode.LOAD and insn.x_size and insn.y_size:
            cost = self._uop_load(insn) if insn.memory_type is MemType.UOP \
                else self._tile_load(insn)
        return _kind(insn), pops, pushes, cost

    def _bank_sets(self, insns, dram):
        """Bank set of every GEMM/ALU instruction (0: no iterations), from the micro-ops the
        LOAD UOPs ahead of it put in the buffer (compute runs in program order)."""
        shadow = UopShadow(self.cfg, dram)
        out = [0] * len(insns)
        for i, insn in enumerate(insns):
            if isinstance(insn, (GemmInsn, AluInsn)):
                out[i] = bank_set(self.cfg, insn, shadow)
            elif (insn.opcode is Opcode.LOAD and insn.memory_type is MemType.UOP
                  and insn.x_size and insn.y_size):
                shadow.load(insn)
        return out

    def _pass(self, insns, static, delays):
        """One run of the event model: (report, read transfers as (index, arrival, beats))."""
        cfg, k, lat = self.cfg, self.k, self.dram_latency
        n = len(insns)
        banks_of = self._banks
        transfers = []
        targets = [_route(i) for i in insns]
        qpos = [0] * n
        counts = dict.fromkeys(MODULES, 0)
        per_module = {m: [] for m in MODULES}
        for i, t in enumerate(targets):
            qpos[i] = counts[t]
            counts[t] += 1
            per_module[t].append(i)

        dispatch = [None] * n
        take = {m: [] for m in MODULES}   # cycle each queue entry was taken, by position
        records = [None] * n
        # Token queues: push cycles (visible one cycle later) and how many were popped.
        tokens = {q: [] for q in ("l2c", "c2l", "c2s", "s2c")}
        popped = dict.fromkeys(tokens, 0)
        chan = _Channel()  # the shared DRAM read channel
        stats = {m: ModuleTiming() for m in MODULES}
        read_beats = write_beats = gemm_uops = alu_uops = 0

        def read_dma(idx, t_go, beats, lead, span):
            """Instruction ``idx``'s read transfer, started at ``t_go``: returns (cycle its
            consumer is done, DMA stall cycles). ``lead``: consumer cycles before its first
            data (top padding), ``span``: consumer cycles in all."""
            nonlocal read_beats
            read_beats += beats
            beats = -(-int(beats * self._beat_cost * 1024) // 1024)
            arrival = max(t_go + k.dma_first + lat + round(2 * self._stall_wait), t_go + lead)
            if beats:
                transfers.append((idx, arrival, beats))
            if delays is None:
                chan.prune(min(free.values()))
                first, last = chan.reserve(arrival, beats)
            else:
                first, last = arrival, arrival + beats + delays.get(idx, 0)
            done = max(first + span - lead, last)
            return done, done - (t_go + span)

        # Fetch state.
        fetch = {"next": 0, "last": -1}
        fetch_period = self._insn_beats if self._insns_per_beat == 1 else 1
        qdepth = cfg.cmd_queue_depth
        ahead = max(1, k.fetch_fifo_beats // self._insn_beats)

        fetch_group = max(1, _BURST_BEATS // self._insn_beats) * self._insns_per_beat

        def fetch_transfer(key, arrival, beats):
            nonlocal read_beats
            read_beats += beats
            beats = -(-int(beats * self._beat_cost * 1024) // 1024)
            transfers.append((key, arrival, beats))
            if delays is None:
                chan.reserve(arrival, beats)

        # The first read-ahead: as much of the stream as the receive FIFO holds.
        fetch_transfer(("fetch", 0), lat + k.fetch_start,
                       -(-min(n, ahead) * self._insn_beats // self._insns_per_beat))

        def run_fetch():
            while fetch["next"] < n:
                i = fetch["next"]
                t = targets[i]
                j = qpos[i]
                earliest = max(fetch["last"] + fetch_period,
                               k.fetch_first - k.queue_latency + lat + i * fetch_period)
                if i >= ahead:
                    earliest = max(earliest, dispatch[i - ahead] + lat + k.dma_first)
                if j >= qdepth:
                    if len(take[t]) <= j - qdepth:
                        return  # the queue is full until the module takes an entry
                    earliest = max(earliest, take[t][j - qdepth] + k.queue_free)
                dispatch[i] = earliest
                fetch["last"] = earliest
                fetch["next"] = i + 1
                # The beats this dispatch frees in the receive FIFO are refilled: one
                # burst's worth of instructions at a time.
                refill = i + ahead
                if refill < n and refill % fetch_group == 0:
                    beats = min(fetch_group, n - refill) * self._insn_beats // \
                        self._insns_per_beat or 1
                    fetch_transfer(("fetch", refill), earliest + lat + k.dma_first, beats)

        # Module state.
        pos = dict.fromkeys(MODULES, 0)
        free = dict.fromkeys(MODULES, 0)
        covered = dict.fromkeys(MODULES, 0)  # busy cycles counted up to here
        lanes = ComputeLanes(k)
        finish_cycle = None

        def token_ready(q, t):
            """Cycle a token of queue ``q`` can be popped at or after ``t``; None if unknown."""
            idx = popped[q]
            if idx >= len(tokens[q]):
                return None
            return max(t, tokens[q][idx] + 1)

        def candidate(mod):
            """(earliest cycle the module's next instruction can be taken, ...) or None."""
            p = pos[mod]
            if p >= len(per_module[mod]):
                return None
            i = per_module[mod][p]
            if dispatch[i] is None:
                return None
            t = max(free[mod], dispatch[i] + k.queue_latency)
            if mod == _COMPUTE:
                t = compute_gate(i, t)[1]
            for q in static[i][1]:
                t = token_ready(q, t)
                if t is None:
                    return None
            return t

        def compute_gate(i, t_avail):
            """(scanner timing, earliest dispatch before tokens) of compute instruction
            ``i``."""
            insn = insns[i]
            is_loop = isinstance(insn, (GemmInsn, AluInsn))
            scan_uops = max(0, insn.uop_end - insn.uop_bgn) if is_loop else 0
            scan = lanes.scan(t_avail, scan_uops)
            lane = banks = None
            if is_loop and banks_of[i]:
                lane, banks = lane_of(insn), banks_of[i]
            sync_only = isinstance(insn, MemInsn) and (insn.x_size == 0 or insn.y_size == 0)
            needs_quiet = insn.opcode is Opcode.LOAD and not sync_only
            d = lanes.earliest(insn, lane, banks or 0, scan[2], bool(static[i][2]), needs_quiet,
                               insn.opcode is Opcode.FINISH)
            return scan, d

        def execute(mod):
            nonlocal write_beats, gemm_uops, alu_uops, finish_cycle
            i = per_module[mod][pos[mod]]
            insn = insns[i]
            t_take = max(free[mod], dispatch[i] + k.queue_latency)
            kind, pops, pushes, cost = static[i]
            rec = InsnTiming(i, mod, kind, dispatch[i], t_take, t_take)
            sync_only = isinstance(insn, MemInsn) and (insn.x_size == 0 or insn.y_size == 0)
            if mod in (_LOAD, _STORE):
                t_pop = t_take + 1
                for q in pops:
                    t_pop = token_ready(q, t_pop)
                rec.token_stall += t_pop - (t_take + 1)
                for q in pops:
                    popped[q] += 1
                if sync_only or (mod == _STORE and (insn.opcode is not Opcode.STORE
                                                    or insn.memory_type is not MemType.OUT)):
                    t_push = t_pop + 1
                elif mod == _LOAD:
                    beats, lead, span = cost
                    done, stall = read_dma(i, t_pop, beats, lead, span)
                    rec.dma_stall += stall
                    rec.work = beats
                    t_push = done + k.load_tail - 1
                else:
                    row = insn.x_size * max(1, cfg.out_elem_bytes // cfg.axi_bytes)
                    beats = insn.y_size * row
                    write_beats += beats
                    rec.work = beats
                    # At most MAX_WRITE_BURSTS bursts between address and response: rows of
                    # a few beats are bound by the response latency, not by the bandwidth.
                    bursts = insn.y_size * -(-row // _BURST_BEATS)
                    blen = beats / bursts
                    stream = max(beats * self._beat_cost,
                                 bursts * (blen + lat + k.write_turn) / _MAX_WRITE_BURSTS)
                    resp = lat + round(3 * self._stall_wait)
                    t_push = (t_pop + k.store_first + round(stream) + resp + k.store_tail - 1)
                    rec.dma_stall += round(stream) - beats + resp
                for q in pushes:
                    tokens[q].append(t_push)
                rec.end = t_push + 1
            else:
                # --- compute ---------------------------------------------------------------
                is_loop = isinstance(insn, (GemmInsn, AluInsn))
                is_load = insn.opcode is Opcode.LOAD and not sync_only
                scan, d = compute_gate(i, t_take)
                t_take = scan[0]
                d_tok = d
                for q in pops:
                    d_tok = token_ready(q, d_tok)
                rec.token_stall += d_tok - d
                d = d_tok
                rec.start = d
                rec.end = d + 1
                for q in pops:
                    popped[q] += 1
                if is_loop:
                    u = cost
                    issued = max(0, insn.uop_end - insn.uop_bgn) * insn.iter_out * insn.iter_in
                    if isinstance(insn, GemmInsn):
                        gemm_uops += issued
                    else:
                        alu_uops += issued
                    rec.work = u
                    if banks_of[i]:
                        lane = lane_of(insn)
                        rec.issue, _, rec.done = lanes.dispatch_loop(lane, banks_of[i], scan,
                                                                     d, u)
                        rec.lane = "GA"[lane]
                    else:  # no micro-op iterations: a token-only instruction
                        lanes.dispatch_other(scan, d)
                elif is_load:
                    beats, lead, span = cost
                    done, stall = read_dma(i, d, beats, lead, span)
                    rec.dma_stall += stall
                    rec.work = beats
                    rec.done = done + k.cload_tail - 2
                    if insn.memory_type is MemType.ACC:
                        rec.done += k.tile_write
                    lanes.dispatch_other(scan, d, rec.done, load=True)
                    if insn.memory_type is MemType.UOP:
                        lanes.block_scanner(rec.done)
                elif insn.opcode is Opcode.FINISH:
                    finish_cycle = d
                    lanes.dispatch_other(scan, d)
                else:  # sync-only LOAD, or an unknown instruction reported by the RTL
                    lanes.dispatch_other(scan, d)
                if pushes:
                    t_push = lanes.push(d)
                    for q in pushes:
                        tokens[q].append(t_push)
                    rec.done = max(rec.done, t_push)
            rec.done = max(rec.done, rec.end)
            free[mod] = scan[0] + scan[1] if mod == _COMPUTE else rec.end
            busy_to = max(rec.end, lanes.quiet) if mod == _COMPUTE else rec.end
            lo = max(t_take, covered[mod])
            covered[mod] = max(covered[mod], busy_to)
            take[mod].append(t_take)
            pos[mod] += 1
            records[i] = rec
            st = stats[mod]
            st.insns += 1
            st.busy += max(0, busy_to - lo)
            st.token_stall += rec.token_stall
            st.dma_stall += rec.dma_stall
            st.work += rec.work

        while True:
            run_fetch()
            if finish_cycle is not None:
                break
            best = None
            for mod in MODULES:
                c = candidate(mod)
                if c is not None and (best is None or c < best[0]):
                    best = (c, mod)
            if best is None:
                stuck = [f"{m}: instruction {per_module[m][pos[m]]}" for m in MODULES
                         if pos[m] < len(per_module[m])]
                raise TimingError("the program can never finish (no FINISH reached, or a "
                                  "token is popped that is never pushed); waiting: "
                                  + (", ".join(stuck) or "nothing"))
            execute(best[1])

        report = TimingReport(cfg, finish_cycle + 1, lat, [r for r in records if r], stats,
                              read_beats, write_beats, gemm_uops, alu_uops)
        return report, transfers


def _share_delays(transfers, window: int) -> dict:
    """Sharing of the read channel (one beat per cycle) among overlapping transfers.

    The AXI master grants ports round-robin, one burst at a time, while a port has credits
    (room in its ``window``-beat receive FIFO); the memory answers bursts in the order it
    accepted them. So a transfer that starts while others stream first waits for the beats
    already granted to them (up to ``window`` each), then shares the channel equally with
    them (the fluid limit of round-robin).

    ``transfers``: ``(key, arrival, beats)``. Returns ``{key: completion - arrival - beats}``,
    the cycles each transfer lost to the others (0 when it had the channel to itself).
    """
    order = sorted(transfers, key=lambda tr: tr[1])
    delays = {}
    active = {}  # key -> [remaining beats, beats of others still ahead of it, arrival, beats]
    now = 0.0
    i = 0
    eps = 1e-9

    def background(key):
        return isinstance(key, tuple) and key[0] == "fetch"

    while i < len(order) or active:
        if not active:
            now = max(now, order[i][1])
        serving = [k for k, r in active.items() if r[1] <= eps]
        if active and not serving:  # nothing ahead is left: stop waiting
            for r in active.values():
                r[1] = 0.0
            serving = list(active)
        # Rates: the fetch (background) gets what the others leave, but at least one burst
        # per age limit while they stream; the others share the rest equally.
        fg = [k for k in serving if not background(k)]
        bg = [k for k in serving if background(k)]
        bg_total = (_FETCH_MIN_SHARE if fg else 1.0) if bg else 0.0
        rate = {k: (1.0 - bg_total) / len(fg) for k in fg}
        rate.update({k: bg_total / len(bg) for k in bg})
        # Next event: an arrival, a transfer finishing, or a waiting one reaching the front.
        t_next = order[i][1] if i < len(order) else float("inf")
        if serving:
            t_next = min(t_next, now + min(active[k][0] / rate[k] for k in serving))
            waits = [r[1] for r in active.values() if r[1] > eps]
            if waits:
                t_next = min(t_next, now + min(waits))
            dt = t_next - now
            for k in serving:
                active[k][0] -= dt * rate[k]
            for r in active.values():
                if r[1] > eps:
                    r[1] -= dt
        now = t_next
        for key in [key for key, r in active.items() if r[0] <= eps]:
            _, _, arrival, beats = active.pop(key)
            delays[key] = max(0, int(round(now - arrival - beats)))
        while i < len(order) and order[i][1] <= now:
            key, arrival, beats = order[i]
            if background(key):
                ahead = sum(min(r[0], window) for r in active.values())
            else:   # at most FETCH_INFLIGHT fetch beats are granted ahead of a data burst
                ahead = sum(min(r[0], _FETCH_INFLIGHT if background(k) else window)
                            for k, r in active.items())
            active[key] = [float(beats), ahead, arrival, beats]
            i += 1
    return delays


def estimate_cycles(cfg, program, *, dram_latency: int = DEFAULT_DRAM_LATENCY,
                    dram_stall: int = 0, acc_read_ports: int | None = None,
                    dram=None) -> TimingReport:
    """Estimate the RTL cycles of ``program`` (bytes or decoded instructions) on ``cfg``.

    ``dram_latency`` and ``dram_stall`` describe the memory as ``sim.rtl.RtlJob`` does
    (first-beat latency in cycles; random stall density 0..255 on every AXI channel).
    ``dram`` is the program's DRAM image (a :class:`~pyvta.sim.dram.Dram`, or ``(bytes,
    base)``): pass it so the model sees the micro-ops and can overlap the two compute lanes
    (see :meth:`TimingModel.estimate`).
    Returns a :class:`TimingReport`: total cycles, one :class:`InsnTiming` per instruction
    executed up to FINISH, and per-module busy/stall totals.
    """
    if isinstance(dram, tuple):
        from .dram import Dram
        data, base = dram
        dram = Dram(base=base, data=data)
    return TimingModel(cfg, dram_latency=dram_latency, dram_stall=dram_stall,
                       acc_read_ports=acc_read_ports).estimate(program, dram)
