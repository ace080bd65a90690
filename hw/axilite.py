"""AXI4-Lite slave implementing the register map of ``hw/regmap.py``.

Every offset, access kind and reset value comes from :func:`pyvta.hw.regmap.register_map`;
this file only knows how each access kind behaves and which core signal a register shows.
"""

from __future__ import annotations

from amaranth import Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .regmap import REG_BYTES, RegisterMap, counter_registers

__all__ = ["AxiLiteSignature", "AxiLiteRegisters"]

#: AXI response codes.
RESP_OKAY, RESP_SLVERR = 0b00, 0b10


class AxiLiteSignature(wiring.Signature):
    """An AXI4-Lite bus, from the master's side (flat Xilinx-style member names)."""

    def __init__(self, addr_width: int):
        self.addr_width = addr_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })


class AxiLiteRegisters(wiring.Component):
    """The control/status register file behind an AXI4-Lite slave port.

    Writes complete when both AW and W are present (one outstanding write, one outstanding
    read). Unmapped offsets read as 0 and answer SLVERR; writes to read-only registers are
    ignored with OKAY (as most Xilinx IP does), so a driver can write whole structures.

    Ports facing the core: ``start`` (pulse), ``insn_addr``, ``insn_count`` (out);
    ``done``, ``busy``, ``core_error`` (8 bits), ``cycles`` and one 32-bit input per counter
    register (named as the core's counter), ``axi_read_error`` / ``axi_write_error`` pulses
    from the AXI master (in); ``interrupt`` (out, level).
    """

    def __init__(self, regmap: RegisterMap):
        self._map = regmap
        self._counters = counter_registers()
        members = {
            "bus": In(AxiLiteSignature(regmap.addr_width)),
            "start": Out(1), "insn_addr": Out(32), "insn_count": Out(32),
            "done": In(1), "busy": In(1), "core_error": In(8), "cycles": In(32),
            "axi_read_error": In(1), "axi_write_error": In(1),
            "interrupt": Out(1),
        }
        for name, _ in self._counters:
            members[name] = In(32)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        rm = self._map
        bus = self.bus
        off = {r.name: r.offset for r in rm}

        irq_enable = Signal(1, init=rm["IRQ_ENABLE"].reset)
        irq_status = Signal(1, init=rm["IRQ_STATUS"].reset)
        insn_addr = Signal(32, init=rm["INSN_ADDR"].reset)
        insn_count = Signal(32, init=rm["INSN_COUNT"].reset)
        sticky = Signal(3)  # AXI_READ, AXI_WRITE, START_UNALIGNED (ERROR bits 8..10)
        done_prev = Signal()
        m.d.sync += done_prev.eq(self.done)
        m.d.comb += [self.insn_addr.eq(insn_addr), self.insn_count.eq(insn_count),
                     self.interrupt.eq(irq_status & irq_enable)]
        with m.If(self.axi_read_error):
            m.d.sync += sticky[0].eq(1)
        with m.If(self.axi_write_error):
            m.d.sync += sticky[1].eq(1)

        # --- write channel: take AW and W together, answer on B --------------------------------
        bvalid = Signal()
        bresp = Signal(2)
        take_w = Signal()
        m.d.comb += [
            take_w.eq(bus.awvalid & bus.wvalid & ~bvalid),
            bus.awready.eq(take_w), bus.wready.eq(take_w),
            bus.bvalid.eq(bvalid), bus.bresp.eq(bresp),
        ]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        word = bus.awaddr[2:]
        wdata = bus.wdata
        done_rise = self.done & ~done_prev
        # Interrupt status: set on done's rising edge; write-1-to-clear (set wins).
        clear_irq = Signal()
        with m.If(take_w):
            m.d.sync += [bvalid.eq(1), bresp.eq(RESP_OKAY)]
            with m.Switch(word):
                with m.Case(off["CONTROL"] // REG_BYTES):
                    with m.If(wdata[0] & ~self.busy):
                        with m.If(insn_addr[:4] != 0):
                            m.d.sync += sticky[2].eq(1)
                        with m.Else():
                            m.d.comb += self.start.eq(1)
                            m.d.sync += sticky.eq(0)
                with m.Case(off["IRQ_ENABLE"] // REG_BYTES):
                    m.d.sync += irq_enable.eq(wdata[0])
                with m.Case(off["IRQ_STATUS"] // REG_BYTES):
                    m.d.comb += clear_irq.eq(wdata[0])
                with m.Case(off["INSN_ADDR"] // REG_BYTES):
                    m.d.sync += insn_addr.eq(wdata)
                with m.Case(off["INSN_COUNT"] // REG_BYTES):
                    m.d.sync += insn_count.eq(wdata)
                readonly = [r.offset // REG_BYTES for r in rm
                            if r.name not in ("CONTROL", "IRQ_ENABLE", "IRQ_STATUS",
                                              "INSN_ADDR", "INSN_COUNT")]
                with m.Case(*readonly):
                    pass  # writes to read-only registers are ignored
                with m.Default():
                    m.d.sync += bresp.eq(RESP_SLVERR)
        with m.If(done_rise):
            m.d.sync += irq_status.eq(1)
        with m.Elif(clear_irq):
            m.d.sync += irq_status.eq(0)

        # --- read channel ------------------------------------------------------------------------
        rvalid = Signal()
        rdata = Signal(32)
        rresp = Signal(2)
        m.d.comb += [bus.arready.eq(~rvalid), bus.rvalid.eq(rvalid), bus.rdata.eq(rdata),
                     bus.rresp.eq(rresp)]
        with m.If(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        sources = {
            "STATUS": self.done | (self.busy << 1),
            "IRQ_ENABLE": irq_enable,
            "IRQ_STATUS": irq_status,
            "INSN_ADDR": insn_addr,
            "INSN_COUNT": insn_count,
            "CYCLES": self.cycles,
            "ERROR": self.core_error | (sticky << 8),
        }
        for name, _ in self._counters:
            sources[name.upper()] = getattr(self, name)
        with m.If(bus.arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rresp.eq(RESP_OKAY), rdata.eq(0)]
            with m.Switch(bus.araddr[2:]):
                for reg in rm:
                    with m.Case(reg.offset // REG_BYTES):
                        if reg.name in sources:
                            m.d.sync += rdata.eq(sources[reg.name])
                        elif reg.access == "ro":  # identification constants
                            m.d.sync += rdata.eq(Const(reg.reset, 32))
                        # write-only registers read as 0
                with m.Default():
                    m.d.sync += rresp.eq(RESP_SLVERR)
        return m
