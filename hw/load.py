"""The load module: LOAD of INP and WGT tiles into their SRAMs, ordered by tokens.

For each instruction of its command queue it pops a compute->load token if ``pop_next_dep``
(the buffer half it overwrites is free), runs the 2-D strided, padded copy, and once every
SRAM write is done pushes a load->compute token if ``push_next_dep``.
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .core_errors import CoreError
from .dma import ReadPortSignature
from .isa import MemType, insn_layout
from .loader import TileLoader
from .queues import SramWriteSignature, TokenPopSignature, TokenPushSignature

__all__ = ["LoadModule"]


class LoadModule(wiring.Component):
    """Executes LOAD INP / LOAD WGT instructions.

    Ports
    -----
    cmd : In(stream.Signature(128))
        Instructions routed here by fetch.
    c2l : Out(TokenPopSignature)
        compute->load tokens (``pop_next_dep``).
    l2c : Out(TokenPushSignature)
        load->compute tokens (``push_next_dep``).
    dma : Out(ReadPortSignature)
    inp_wr, wgt_wr : Out(SramWriteSignature)
        Write ports of the INP and WGT SRAMs.
    busy, token_stall, dma_stall : Out(1)
        Status for the performance counters.
    error : Out(CoreError)
        One-cycle pulses of error bits (the core keeps them sticky).
    """

    def __init__(self, cfg):
        self._cfg = cfg
        super().__init__({
            "cmd": In(stream.Signature(128)),
            "c2l": Out(TokenPopSignature()),
            "l2c": Out(TokenPushSignature()),
            "dma": Out(ReadPortSignature(cfg.axi_data_width)),
            "inp_wr": Out(SramWriteSignature(cfg.log_inp_depth, cfg.inp_elem_bytes * 8)),
            "wgt_wr": Out(SramWriteSignature(cfg.log_wgt_depth, cfg.wgt_elem_bytes * 8)),
            "busy": Out(1),
            "token_stall": Out(1),
            "dma_stall": Out(1),
            "error": Out(CoreError),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        lay = insn_layout(cfg).mem_layout
        m.submodules.loader = loader = TileLoader(cfg, (MemType.INP, MemType.WGT))
        wiring.connect(m, wiring.flipped(self.dma), loader.dma)

        insn = Signal(lay)
        m.d.comb += loader.insn.eq(insn)
        for port, t in ((self.inp_wr, MemType.INP), (self.wgt_wr, MemType.WGT)):
            m.d.comb += [port.addr.eq(loader.wr.addr), port.data.eq(loader.wr.data),
                         port.en.eq(loader.wr.en & (loader.wr_type == t))]

        with m.FSM(name="load_fsm") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.cmd.ready.eq(1)
                with m.If(self.cmd.valid):
                    m.d.sync += insn.eq(self.cmd.payload)
                    m.next = "POP"
            with m.State("POP"):
                with m.If(~insn.pop_next_dep | self.c2l.valid):
                    m.d.comb += self.c2l.pop.eq(insn.pop_next_dep)
                    with m.If((insn.x_size == 0) | (insn.y_size == 0)):
                        m.next = "PUSH"  # a synchronisation-only instruction
                    with m.Else():
                        m.d.comb += loader.go.eq(1)
                        with m.If((insn.memory_type == MemType.WGT)
                                  & ((insn.y_pad_0 != 0) | (insn.y_pad_1 != 0)
                                     | (insn.x_pad_0 != 0) | (insn.x_pad_1 != 0))):
                            # Padding is defined for INP (and ACC) only: ignore it, report it.
                            m.d.comb += self.error.eq(CoreError.BAD_PAD)
                            m.d.comb += [loader.insn.y_pad_0.eq(0), loader.insn.y_pad_1.eq(0),
                                         loader.insn.x_pad_0.eq(0), loader.insn.x_pad_1.eq(0)]
                        m.next = "RUN"
                with m.Else():
                    m.d.comb += self.token_stall.eq(1)
            with m.State("RUN"):
                with m.If(loader.idle):
                    m.next = "PUSH"
            with m.State("PUSH"):
                with m.If(~insn.push_next_dep | self.l2c.ready):
                    m.d.comb += self.l2c.push.eq(insn.push_next_dep)
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.token_stall.eq(1)
        m.d.comb += [
            self.busy.eq(~fsm.ongoing("IDLE")),
            self.dma_stall.eq(loader.dma_stall),
        ]
        return m
