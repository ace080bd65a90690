"""The store module: OUT tiles from SRAM to DRAM through the write DMA port.

For each STORE it pops a compute->store token if ``pop_prev_dep``, issues one DMA write
request per DRAM row (a whole row each, several outstanding), streams the OUT elements as bus
beats, waits for every write completion (so the data is in DRAM), then pushes a
store->compute token if ``push_prev_dep``.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .core_errors import CoreError
from .dma import WritePortSignature
from .isa import MemType, Opcode, insn_layout
from .queues import SramReadSignature, TokenPopSignature, TokenPushSignature

__all__ = ["StoreModule"]

#: OUT elements buffered between the SRAM read and the DMA data stream.
_ELEM_FIFO_DEPTH = 4


class StoreModule(wiring.Component):
    """Executes STORE instructions.

    Ports
    -----
    cmd : In(stream.Signature(128))
    c2s : Out(TokenPopSignature)
        compute->store tokens (``pop_prev_dep``).
    s2c : Out(TokenPushSignature)
        store->compute tokens (``push_prev_dep``).
    dma : Out(WritePortSignature)
    out_rd : Out(SramReadSignature)
        Read port of the OUT SRAM.
    busy, token_stall, dma_stall : Out(1)
    error : Out(CoreError)
        One-cycle pulses of error bits.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(128)),
            "c2s": Out(TokenPopSignature()),
            "s2c": Out(TokenPushSignature()),
            "dma": Out(WritePortSignature(cfg.axi_data_width)),
            "out_rd": Out(SramReadSignature(cfg.log_acc_depth, cfg.out_elem_bytes * 8)),
            "busy": Out(1),
            "token_stall": Out(1),
            "dma_stall": Out(1),
            "error": Out(CoreError),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        w = cfg.axi_data_width
        eb = cfg.out_elem_bytes
        log_eb = eb.bit_length() - 1
        log_ab = cfg.axi_bytes.bit_length() - 1
        beats_per_elem = eb // cfg.axi_bytes
        insn = Signal(insn_layout(cfg).mem_layout)

        # --- request generator ----------------------------------------------------------------
        req_active = Signal()
        req_left = Signal(16)
        req_addr = Signal(32)
        m.d.comb += [
            self.dma.req.valid.eq(req_active),
            self.dma.req.payload.addr.eq(req_addr),
            self.dma.req.payload.beats.eq(insn.x_size << (log_eb - log_ab)),
        ]
        outstanding = Signal(17)  # requests issued whose completion has not arrived
        issued = self.dma.req.valid & self.dma.req.ready
        completed = self.dma.done.valid
        m.d.comb += self.dma.done.ready.eq(1)
        with m.If(issued):
            m.d.sync += [req_addr.eq(req_addr + (insn.x_stride << log_eb)),
                         req_left.eq(req_left - 1)]
            with m.If(req_left == 1):
                m.d.sync += req_active.eq(0)
        with m.If(issued & ~completed):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(completed & ~issued):
            m.d.sync += outstanding.eq(outstanding - 1)
        with m.If(completed & self.dma.done.payload):
            m.d.comb += self.error.eq(CoreError.DMA_WRITE)

        # --- SRAM reader into a small element FIFO ------------------------------------------------
        m.submodules.elems = fifo = SyncFIFOBuffered(width=eb * 8, depth=_ELEM_FIFO_DEPTH)
        rd_active = Signal()
        rd_left = Signal(32)        # elements still to read
        rd_addr = Signal(cfg.log_acc_depth)
        rd_pending = Signal()       # a read issued last cycle lands in the FIFO now
        can_read = rd_active & (fifo.level + rd_pending < _ELEM_FIFO_DEPTH)
        m.d.comb += [self.out_rd.addr.eq(rd_addr), self.out_rd.en.eq(can_read),
                     fifo.w_data.eq(self.out_rd.data), fifo.w_en.eq(rd_pending)]
        m.d.sync += rd_pending.eq(can_read)
        with m.If(can_read):
            m.d.sync += [rd_addr.eq(rd_addr + 1), rd_left.eq(rd_left - 1)]
            with m.If(rd_left == 1):
                m.d.sync += rd_active.eq(0)

        # --- beat serializer --------------------------------------------------------------------
        beat = Signal(range(beats_per_elem))
        m.d.comb += [self.dma.data.valid.eq(fifo.r_rdy),
                     self.dma.data.payload.eq(fifo.r_data.word_select(beat, w))]
        with m.If(self.dma.data.valid & self.dma.data.ready):
            with m.If(beat == beats_per_elem - 1):
                m.d.sync += beat.eq(0)
                m.d.comb += fifo.r_en.eq(1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        # --- control ------------------------------------------------------------------------------
        drained = ~req_active & ~rd_active & ~rd_pending & (fifo.level == 0) & (outstanding == 0)
        with m.FSM(name="store_fsm") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += insn.eq(self.cmd.payload)
                    m.next = "POP"
            with m.State("POP"):
                with m.If(~insn.pop_prev_dep | self.c2s.valid):
                    m.d.comb += self.c2s.pop.eq(insn.pop_prev_dep)
                    bad = (insn.opcode != Opcode.STORE) | (insn.memory_type != MemType.OUT)
                    with m.If(bad):
                        m.d.comb += self.error.eq(CoreError.BAD_INSN)
                        m.next = "PUSH"
                    with m.Elif((insn.x_size == 0) | (insn.y_size == 0)):
                        m.next = "PUSH"
                    with m.Else():
                        with m.If((insn.y_pad_0 != 0) | (insn.y_pad_1 != 0)
                                  | (insn.x_pad_0 != 0) | (insn.x_pad_1 != 0)):
                            m.d.comb += self.error.eq(CoreError.BAD_PAD)
                        m.d.sync += [
                            req_active.eq(1), req_left.eq(insn.y_size),
                            req_addr.eq(insn.dram_base << log_eb),
                            rd_active.eq(1), rd_left.eq(insn.y_size * insn.x_size),
                            rd_addr.eq(insn.sram_base),
                        ]
                        m.next = "RUN"
                with m.Else():
                    m.d.comb += self.token_stall.eq(1)
            with m.State("RUN"):
                with m.If(drained):
                    m.next = "PUSH"
                m.d.comb += self.dma_stall.eq(
                    (self.dma.req.valid & ~self.dma.req.ready)
                    | (self.dma.data.valid & ~self.dma.data.ready)
                    | (~req_active & ~rd_active & ~fifo.r_rdy & (outstanding != 0)))
            with m.State("PUSH"):
                with m.If(~insn.push_prev_dep | self.s2c.ready):
                    m.d.comb += self.s2c.push.eq(insn.push_prev_dep)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.token_stall.eq(1)
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
