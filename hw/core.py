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
  ``insn_count``, clears ``done``, ``error`` and every counter, and raises ``busy``.
* ``busy`` is high from the cycle after ``start`` until the FINISH instruction executes.
* ``done`` rises in the cycle FINISH executes and stays high until the next ``start``
  (a level, so a polling host cannot miss it; its rising edge is the "interrupt").
* Counters count while ``busy`` and hold their value after ``done`` until the next ``start``.
"""

from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .config import HwConfig, load_config
from .dma import ReadPortSignature, WritePortSignature

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


class CoreError(enum.IntFlag, shape=8):
    """Sticky error bits reported on :attr:`Core.error` (cleared by ``start``).

    The functional simulator rejects every such program before it runs; the hardware
    reports what it sees instead of hanging or silently corrupting state.
    """
    #: A write DMA completion reported an AXI error response (SLVERR/DECERR).
    DMA_WRITE = 1 << 0
    #: An instruction with an unknown opcode or memory type, or a LOAD of OUT, or a STORE of
    #: anything but OUT; the instruction is skipped (its dependency flags are still honoured).
    BAD_INSN = 1 << 1
    #: Padding on a LOAD of WGT or UOP, or on a STORE; the padding is ignored.
    BAD_PAD = 1 << 2


class Core(wiring.Component):
    """The accelerator core for one configuration.

    Parameters
    ----------
    cfg : HwConfig or str
        The hardware configuration (or a preset name).

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

    def __init__(self, cfg: HwConfig | str | None = None):
        self._cfg = cfg = load_config(cfg)
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
        # The internals are assembled from hw/fetch.py, load.py, compute.py, store.py and
        # queues.py; until they land, this only publishes the final port list (interim).
        m = Module()
        return m
