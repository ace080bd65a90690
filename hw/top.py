"""The accelerator top level: Core + AXI4 master + AXI4-Lite registers + interrupt.

Port names follow Xilinx conventions (``m_axi_*`` memory master, ``s_axi_control_*`` register
slave, ``interrupt``, plus Amaranth's ``clk`` / ``rst``) so Vivado's IP packager infers the
interfaces without a hand-written component file. ``rst`` is active high and synchronous.

Block diagram::

    s_axi_control --> AxiLiteRegisters --start/insn_addr/count--> Core
                                       <--done/busy/error/counters--
    Core.fetch_dma/load_dma/compute_dma --> AxiMaster.read0/1/2 \\
    Core.store_dma --------------------------> AxiMaster.write   --> m_axi
"""

from __future__ import annotations

from amaranth import Module, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import Axi4Signature, AxiMaster
from .axilite import AxiLiteRegisters, AxiLiteSignature
from .config import HwConfig, load_config
from .core import Core
from .regmap import counter_registers, register_map

__all__ = ["Accelerator", "READ_PORTS", "MAX_BURST", "READ_FIFO_DEPTH", "FETCH_AGE",
           "FETCH_INFLIGHT"]

#: DMA read ports in AXI ID order.
READ_PORTS = ("fetch_dma", "load_dma", "compute_dma")
#: Longest AXI burst the master issues (16: legal on Zynq-7000's AXI3 HP/ACP ports too).
MAX_BURST = 16
#: Receive FIFO per read port, in beats: bounds the reads in flight per port and so the DRAM
#: latency that is hidden (128 beats = 8 bursts).
READ_FIFO_DEPTH = 128
#: The instruction fetch reads in the background: it gets the read channel when neither the
#: load nor the compute module asks for it, or after waiting this many cycles ...
FETCH_AGE = 64
#: ... and keeps at most this many beats requested but not yet received.
FETCH_INFLIGHT = 32


def _flat_members(prefix: str, signature: wiring.Signature, flip: bool) -> dict:
    """Members of ``signature`` as flat top-level ports named ``prefix + name``."""
    members = {}
    for name, member in signature.members.items():
        members[prefix + name] = member.flip() if flip else member
    return members


class Accelerator(wiring.Component):
    """The whole accelerator for configuration ``cfg``, ready for Verilog generation."""

    def __init__(self, cfg: HwConfig | str | None = None):
        self._cfg = cfg = load_config(cfg)
        self._regmap = register_map(cfg)
        self._axi_sig = Axi4Signature(addr_width=32, data_width=cfg.axi_data_width,
                                      id_width=max(1, (len(READ_PORTS) - 1).bit_length()))
        self._lite_sig = AxiLiteSignature(self._regmap.addr_width)
        members = {}
        members.update(_flat_members("m_axi_", self._axi_sig, flip=False))
        members.update(_flat_members("s_axi_control_", self._lite_sig, flip=True))
        members["interrupt"] = Out(1)
        super().__init__(members)

    @property
    def cfg(self) -> HwConfig:
        return self._cfg

    @property
    def regmap(self):
        return self._regmap

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        m.submodules.core = core = Core(cfg)
        m.submodules.axi = axi = AxiMaster(cfg.axi_data_width, len(READ_PORTS),
                                           max_burst=MAX_BURST,
                                           read_fifo_depth=READ_FIFO_DEPTH,
                                           background=READ_PORTS.index("fetch_dma"),
                                           background_age=FETCH_AGE,
                                           background_inflight=FETCH_INFLIGHT)
        m.submodules.regs = regs = AxiLiteRegisters(self._regmap)

        for i, name in enumerate(READ_PORTS):
            wiring.connect(m, getattr(core, name), getattr(axi, f"read{i}"))
        wiring.connect(m, core.store_dma, axi.write)

        m.d.comb += [
            core.start.eq(regs.start),
            core.insn_addr.eq(regs.insn_addr),
            core.insn_count.eq(regs.insn_count),
            regs.done.eq(core.done),
            regs.busy.eq(core.busy),
            regs.core_error.eq(Value.cast(core.error)),
            regs.cycles.eq(core.cycles),
            regs.axi_read_error.eq(axi.read_error),
            regs.axi_write_error.eq(axi.write_error),
            self.interrupt.eq(regs.interrupt),
        ]
        for name, _ in counter_registers():
            m.d.comb += getattr(regs, name).eq(getattr(core, name))

        # Flatten the two buses onto the Xilinx-named ports.
        for name, member in self._axi_sig.members.items():
            top, inner = getattr(self, "m_axi_" + name), getattr(axi.bus, name)
            if member.flow == Out:
                m.d.comb += top.eq(inner)
            else:
                m.d.comb += inner.eq(top)
        for name, member in self._lite_sig.members.items():
            top, inner = getattr(self, "s_axi_control_" + name), getattr(regs.bus, name)
            if member.flow == Out:   # master-driven: an input of the accelerator
                m.d.comb += inner.eq(top)
            else:
                m.d.comb += top.eq(inner)
        return m
