"""Sticky error bits the accelerator core reports (``Core.error``)."""

from amaranth.lib import enum

__all__ = ["CoreError"]


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
    #: No module can make progress and FINISH has not executed: the stream ended without
    #: FINISH (or ``insn_count`` was 0), or the modules wait on each other's tokens. The
    #: core stops (``busy`` falls, ``done`` rises) so the host does not wait forever.
    HANG = 1 << 3
    #: ``insn_addr`` is not aligned to the bus width (``cfg.axi_bytes``): nothing is fetched
    #: and the run stops at once (with ``HANG``, as an empty stream does).
    BAD_ADDR = 1 << 4
