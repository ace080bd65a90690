"""The accelerator core: fetch, load, compute and store, their queues and on-chip SRAMs.

``Core(cfg)`` is everything of the accelerator except the bus logic: it talks to DRAM only
through four DMA ports (see :mod:`pyvta.hw.dma`) and to the host through a handful of
control/status ports. The top level (``hw/top.py``) connects the DMA ports to the AXI4 master
and the control/status ports to the AXI4-Lite register file.

Block diagram (queues are FIFOs, tokens are 1-bit dependency queues)::

    fetch --(cmd)--> load    --tokens--> compute --tokens--> store
          --(cmd)--> compute <-tokens--          <-tokens--
          --(cmd)--> store
    load writes INP/WGT, compute reads them; compute writes OUT, store reads it.

Control protocol
----------------
* ``start`` (one-cycle pulse, ignored while ``busy``) latches ``insn_addr`` and
  ``insn_count``, clears ``done``, ``error`` and every counter, resets every module, queue
  and pipeline (SRAM contents are kept) and raises ``busy``; fetch begins the next cycle.
* ``busy`` is high from the cycle after ``start`` until the FINISH instruction executes.
* ``done`` rises in the cycle FINISH executes and stays high until the next ``start``
  (a level, so a polling host cannot miss it; its rising edge is the "interrupt").
  It also rises, with the ``CoreError.HANG`` error bit, when the core detects that no
  module can ever make progress again (no FINISH in the stream, or a token deadlock).
* Counters count while ``busy`` and hold their value after ``done`` until the next ``start``.
"""

from __future__ import annotations

from amaranth import Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import HwConfig, load_config
from .core_errors import CoreError
from .compute import ComputeModule
from .dma import ReadPortSignature, WritePortSignature
from .fetch import Fetch
from .load import LoadModule
from .queues import TokenQueue
from .store import StoreModule

__all__ = ["Core", "CoreError", "COUNTERS"]

#: Names of the 32-bit performance counter outputs of :class:`Core`, in register-map order.
#: Every one counts clock cycles (or micro-ops) between ``start`` and FINISH:
#:
#: * ``cycles``: cycles while ``busy``;
#: * ``<module>_busy``: cycles the module is executing an instruction (including its stalls);
#: * ``<module>_token_stall``: cycles the module waits to pop a dependency token or for room
#:   to push one;
#: * ``<module>_dma_stall``: cycles the module waits on its DMA port (request not accepted,
#:   read data not valid, write data not accepted, or write completions outstanding);
#: * ``fetch_insns``: instructions fetched and dispatched;
#: * ``gemm_uops`` / ``alu_uops``: micro-op iterations executed by GEMM / ALU instructions.
COUNTERS = ("cycles", "fetch_insns",
            "load_busy", "load_token_stall", "load_dma_stall",
            "compute_busy", "compute_token_stall", "compute_dma_stall",
            "store_busy", "store_token_stall", "store_dma_stall",
            "gemm_uops", "alu_uops")


class Core(wiring.Component):
    """The accelerator core for one configuration.

    Parameters
    ----------
    cfg : HwConfig or str
        The hardware configuration (or a preset name).
    acc_read_ports : 1, 2 or None
        ACC SRAM read ports of the compute module (2: tensor-operand ALU micro-ops at one
        per cycle, ACC SRAM duplicated; 1: two cycles each). ``None`` picks 2 when the part's
        block RAM allows (``compute.acc_read_ports_for``).

    Ports
    -----
    start : In(1)
        Pulse: start executing ``insn_count`` instructions at byte address ``insn_addr``.
    insn_addr : In(32)
        Physical byte address of the first instruction (aligned to ``cfg.axi_bytes``).
    insn_count : In(32)
        Number of 16-byte instructions; the last must be FINISH.
    done : Out(1)
        High from the cycle FINISH executes until the next ``start``.
    busy : Out(1)
        High while a program runs.
    error : Out(CoreError)
        Sticky :class:`CoreError` bits of this run.
    fetch_dma, load_dma, compute_dma : Out(ReadPortSignature(cfg.axi_data_width))
        DMA read ports: instructions; INP and WGT tiles; micro-ops and ACC tiles.
    store_dma : Out(WritePortSignature(cfg.axi_data_width))
        DMA write port: OUT tiles.
    <counter> : Out(32)
        One port per name in :data:`COUNTERS`.
    """

    def __init__(self, cfg: HwConfig | str | None = None, *, acc_read_ports: int | None = None):
        self._cfg = cfg = load_config(cfg)
        self._acc_read_ports = acc_read_ports
        w = cfg.axi_data_width
        members = {
            "start": In(1),
            "insn_addr": In(32),
            "insn_count": In(32),
            "done": Out(1),
            "busy": Out(1),
            "error": Out(CoreError),
            "fetch_dma": Out(ReadPortSignature(w)),
            "load_dma": Out(ReadPortSignature(w)),
            "compute_dma": Out(ReadPortSignature(w)),
            "store_dma": Out(WritePortSignature(w)),
        }
        for name in COUNTERS:
            members[name] = Out(32)
        super().__init__(members)

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg

        # --- modules ----------------------------------------------------------------------------
        # Every module, queue and pipeline register is reset by ``start`` (SRAM contents are
        # kept), so a run that stopped on an error cannot leave work behind for the next one.
        start = Signal()
        soft_reset = ResetInserter(start)
        # Fetch starts the cycle after the reset, from the values latched with ``start``.
        fetch_start = Signal()
        addr, count = Signal(32), Signal(32)
        m.d.sync += fetch_start.eq(start)
        misaligned = self.insn_addr[:cfg.axi_bytes.bit_length() - 1] != 0
        with m.If(start):
            m.d.sync += [addr.eq(self.insn_addr), count.eq(Mux(misaligned, 0, self.insn_count))]
        fetch, load = Fetch(cfg), LoadModule(cfg)
        compute, store = ComputeModule(cfg, self._acc_read_ports), StoreModule(cfg)
        m.submodules.fetch = soft_reset(fetch)
        m.submodules.load = soft_reset(load)
        m.submodules.compute = soft_reset(compute)
        m.submodules.store = soft_reset(store)

        # --- command queues ----------------------------------------------------------------------
        queues = {}
        for name, src, dst in (("load_q", fetch.load_cmd, load.cmd),
                               ("compute_q", fetch.compute_cmd, compute.cmd),
                               ("store_q", fetch.store_cmd, store.cmd)):
            q = SyncFIFOBuffered(width=128, depth=cfg.cmd_queue_depth)
            queues[name] = q
            m.submodules[name] = soft_reset(q)
            m.d.comb += [q.w_data.eq(src.payload), q.w_en.eq(src.valid), src.ready.eq(q.w_rdy),
                         dst.payload.eq(q.r_data), dst.valid.eq(q.r_rdy), q.r_en.eq(dst.ready)]

        # --- dependency-token queues -----------------------------------------------------------
        tokens = {}
        for name, producer, consumer in (("l2c", load.l2c, compute.l2c),
                                         ("c2l", compute.c2l, load.c2l),
                                         ("c2s", compute.c2s, store.c2s),
                                         ("s2c", store.s2c, compute.s2c)):
            tq = TokenQueue(cfg.dep_queue_depth)
            tokens[name] = tq
            m.submodules[f"tok_{name}"] = soft_reset(tq)
            wiring.connect(m, producer, tq.w)
            wiring.connect(m, consumer, tq.r)
            m.d.comb += tq.clear.eq(start)

        # --- shared SRAMs: one writer module and one reader module each -----------------------
        for name, width, depth, wr, rd in (
                ("inp_mem", cfg.inp_elem_bytes * 8, cfg.inp_depth, load.inp_wr, compute.inp_rd),
                ("wgt_mem", cfg.wgt_elem_bytes * 8, cfg.wgt_depth, load.wgt_wr, compute.wgt_rd)):
            mem = Memory(shape=width, depth=depth, init=[])
            m.submodules[name] = mem
            wp = mem.write_port()
            # Not transparent: the writer and the reader are ordered by dependency tokens.
            rp = mem.read_port()
            m.d.comb += [wp.addr.eq(wr.addr), wp.data.eq(wr.data), wp.en.eq(wr.en),
                         rp.addr.eq(rd.addr), rp.en.eq(rd.en), rd.data.eq(rp.data)]
        # OUT: two banks by the top bit of the ACC index (the compute module's two lanes write
        # them); the store module reads through a mux selected by the registered top bit of
        # the address it read, since the data comes back a cycle after the address.
        top = cfg.log_acc_depth - 1
        out_sel = Signal()
        with m.If(store.out_rd.en):
            m.d.sync += out_sel.eq(store.out_rd.addr[top])
        out_rd_data = []
        for b, wr in enumerate((compute.out_wr0, compute.out_wr1)):
            mem = Memory(shape=cfg.out_elem_bytes * 8, depth=cfg.out_depth // 2, init=[])
            m.submodules[f"out_bank{b}"] = mem
            wp = mem.write_port()
            rp = mem.read_port()
            m.d.comb += [wp.addr.eq(wr.addr), wp.data.eq(wr.data), wp.en.eq(wr.en),
                         rp.addr.eq(store.out_rd.addr[:top]),
                         rp.en.eq(store.out_rd.en & (store.out_rd.addr[top] == b))]
            out_rd_data.append(rp.data)
        m.d.comb += store.out_rd.data.eq(Mux(out_sel, out_rd_data[1], out_rd_data[0]))

        # --- DMA ports ----------------------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.fetch_dma), fetch.dma)
        wiring.connect(m, wiring.flipped(self.load_dma), load.dma)
        wiring.connect(m, wiring.flipped(self.compute_dma), compute.dma)
        wiring.connect(m, wiring.flipped(self.store_dma), store.dma)

        # --- hang detection ---------------------------------------------------------------------
        # Tokens are only pushed by a module that executes, and instructions only arrive from
        # fetch: if fetch has nothing left to deliver (or waits on a full queue) and every
        # module is idle with an empty queue or waiting on a token, nothing can change again.
        # Seen in two consecutive cycles to stay clear of same-cycle handshakes.
        stuck = {
            "load": load.token_stall | (~load.busy & (queues["load_q"].level == 0)),
            # (the compute module may wait on a token while its lanes still finish work whose
            # deferred token pushes unblock others: it reports when nothing can move)
            "compute": compute.stuck,
            "store": store.token_stall | (~store.busy & (queues["store_q"].level == 0)),
        }
        hang = Signal()
        hang_seen = Signal()
        m.d.comb += hang.eq((~fetch.busy | fetch.stalled) & stuck["load"] & stuck["compute"]
                            & stuck["store"])
        m.d.sync += hang_seen.eq(hang & self.busy & ~start & ~fetch_start)

        # --- run control ----------------------------------------------------------------------------
        m.d.comb += [
            start.eq(self.start & ~self.busy),
            fetch.start.eq(fetch_start), fetch.addr.eq(addr), fetch.count.eq(count),
        ]
        with m.If(start):
            m.d.sync += [self.busy.eq(1), self.done.eq(0),
                         self.error.eq(Mux(misaligned, CoreError.BAD_ADDR, 0))]
            m.d.sync += [getattr(self, name).eq(0) for name in COUNTERS]
        with m.Else():
            m.d.sync += self.error.eq(self.error | load.error | compute.error | store.error)
            with m.If(self.busy & compute.finish):
                m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            with m.Elif(self.busy & hang_seen & hang):
                m.d.sync += [self.busy.eq(0), self.done.eq(1),
                             self.error.eq(self.error | CoreError.HANG)]
            events = {
                "cycles": 1,
                "fetch_insns": fetch.dispatched,
                "load_busy": load.busy, "load_token_stall": load.token_stall,
                "load_dma_stall": load.dma_stall,
                "compute_busy": compute.busy, "compute_token_stall": compute.token_stall,
                "compute_dma_stall": compute.dma_stall,
                "store_busy": store.busy, "store_token_stall": store.token_stall,
                "store_dma_stall": store.dma_stall,
                "gemm_uops": compute.gemm_uop, "alu_uops": compute.alu_uop,
            }
            assert set(events) == set(COUNTERS)
            with m.If(self.busy):
                for name, event in events.items():
                    counter = getattr(self, name)
                    m.d.sync += counter.eq(counter + event)
        return m
