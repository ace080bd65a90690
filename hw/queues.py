"""Dependency-token queues and the small port signatures the core's modules share.

VTA's four dependency queues carry 1-bit tokens that are always 1, so a queue is fully
described by how many tokens it holds: :class:`TokenQueue` is a saturating up/down counter
with the FIFO's handshake (a module blocks on pop from an empty queue and on push into a full
one). The command queues between fetch and the modules are ordinary FIFOs
(:class:`amaranth.lib.fifo.SyncFIFOBuffered`, 128 bits wide).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TokenPushSignature", "TokenPopSignature", "TokenQueue",
           "SramReadSignature", "SramWriteSignature"]


class TokenPushSignature(wiring.Signature):
    """A producer's side of a token queue: ``push`` (only when ``ready``)."""

    def __init__(self):
        super().__init__({"push": Out(1), "ready": In(1)})


class TokenPopSignature(wiring.Signature):
    """A consumer's side of a token queue: ``pop`` (only when ``valid``)."""

    def __init__(self):
        super().__init__({"pop": Out(1), "valid": In(1)})


class SramReadSignature(wiring.Signature):
    """A client's side of a synchronous SRAM read port: ``data`` is valid one cycle after
    ``en`` with ``addr``."""

    def __init__(self, addr_width: int, data_width: int):
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": In(data_width)})


class SramWriteSignature(wiring.Signature):
    """A client's side of a synchronous SRAM write port."""

    def __init__(self, addr_width: int, data_width: int):
        self.addr_width, self.data_width = addr_width, data_width
        super().__init__({"addr": Out(addr_width), "en": Out(1), "data": Out(data_width)})


class TokenQueue(wiring.Component):
    """A queue of ``depth`` 1-bit dependency tokens.

    Ports
    -----
    w : In(TokenPushSignature)
        Producer: ``w.ready`` while fewer than ``depth`` tokens are held.
    r : In(TokenPopSignature)
        Consumer: ``r.valid`` while at least one token is held.
    clear : In(1)
        Empty the queue (the core pulses it on ``start`` so a broken program cannot leave
        stale tokens for the next one).
    level : Out(range(depth + 1))
        Tokens held.

    A push and a pop in the same cycle are both accepted (when each is allowed on its own).
    """

    def __init__(self, depth: int):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            self._MustUse__silence = True  # never elaborated: no "unused" warning
            raise ValueError(f"token queue depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({"w": In(TokenPushSignature()), "r": In(TokenPopSignature()),
                          "clear": In(1), "level": Out(range(depth + 1))})

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(self._depth + 1))
        do_push = Signal()
        do_pop = Signal()
        m.d.comb += [
            self.w.ready.eq(count < self._depth),
            self.r.valid.eq(count > 0),
            do_push.eq(self.w.push & self.w.ready),
            do_pop.eq(self.r.pop & self.r.valid),
            self.level.eq(count),
        ]
        with m.If(self.clear):
            m.d.sync += count.eq(0)
        with m.Elif(do_push & ~do_pop):
            m.d.sync += count.eq(count + 1)
        with m.Elif(do_pop & ~do_push):
            m.d.sync += count.eq(count - 1)
        return m
