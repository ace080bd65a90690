"""The fetch module: reads the instruction stream by DMA and dispatches it in program order.

LOAD of INP or WGT goes to the load queue, STORE to the store queue, everything else (LOAD of
UOP or ACC, GEMM, ALU, FINISH and anything unknown, which compute reports) to the compute
queue. Requests of up to :data:`FETCH_CHUNK_BEATS` beats are issued ahead of the data; the
dispatcher stalls when the target queue is full, which in turn back-pressures the DMA data.
"""

from __future__ import annotations

from amaranth import Module, Signal, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .dma import ReadPortSignature
from .isa import INSN_BYTES, MemType, Opcode

__all__ = ["Fetch", "FETCH_CHUNK_BEATS"]

#: Beats per fetch DMA request (the AXI master splits them into legal bursts).
FETCH_CHUNK_BEATS = 1 << 12


class Fetch(wiring.Component):
    """Instruction fetch and routing.

    Ports
    -----
    start : In(1)
        Pulse: fetch ``count`` instructions from byte address ``addr``.
    addr, count : In(32)
    dma : Out(ReadPortSignature)
    load_cmd, compute_cmd, store_cmd : Out(stream.Signature(128))
        The three command queues.
    dispatched : Out(1)
        Pulses once per instruction dispatched.
    busy : Out(1)
        Instructions remain to be fetched or dispatched.
    stalled : Out(1)
        An instruction waits for room in its (full) command queue.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        if cfg.axi_data_width > 2 * INSN_BYTES * 8:
            raise ValueError(f"fetch supports buses up to {2 * INSN_BYTES * 8} bits, not "
                             f"{cfg.axi_data_width}")
        super().__init__({
            "start": In(1), "addr": In(32), "count": In(32),
            "dma": Out(ReadPortSignature(cfg.axi_data_width)),
            "load_cmd": Out(stream.Signature(128)),
            "compute_cmd": Out(stream.Signature(128)),
            "store_cmd": Out(stream.Signature(128)),
            "dispatched": Out(1), "busy": Out(1), "stalled": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        w = cfg.axi_data_width
        ab = cfg.axi_bytes
        log_ab = ab.bit_length() - 1
        ipb = max(1, ab // INSN_BYTES)        # instructions per beat
        bpi = max(1, INSN_BYTES // ab)        # beats per instruction

        # --- requests ---------------------------------------------------------------------------
        req_left = Signal(33)  # beats not yet requested
        req_addr = Signal(32)
        chunk = Mux(req_left > FETCH_CHUNK_BEATS, FETCH_CHUNK_BEATS, req_left)
        m.d.comb += [self.dma.req.valid.eq(req_left != 0),
                     self.dma.req.payload.addr.eq(req_addr),
                     self.dma.req.payload.beats.eq(chunk)]
        with m.If(self.dma.req.valid & self.dma.req.ready):
            m.d.sync += [req_left.eq(req_left - chunk), req_addr.eq(req_addr + (chunk << log_ab))]

        # --- assembly and dispatch ---------------------------------------------------------------
        insns_left = Signal(32)
        buf = Signal(max(128, w))
        buf_full = Signal()
        beat = Signal(range(bpi))
        sub = Signal(range(ipb))
        word = buf.word_select(sub, 128) if ipb > 1 else buf[:128]
        opcode = word[0:3]
        mtype = word[7:10]
        to_load = (opcode == Opcode.LOAD) & ((mtype == MemType.INP) | (mtype == MemType.WGT))
        to_store = opcode == Opcode.STORE
        to_compute = ~to_load & ~to_store
        targets = ((self.load_cmd, to_load), (self.compute_cmd, to_compute),
                   (self.store_cmd, to_store))
        tgt_ready = Signal()
        for port, sel in targets:
            m.d.comb += [port.payload.eq(word), port.valid.eq(buf_full & sel)]
            with m.If(sel):
                m.d.comb += tgt_ready.eq(port.ready)
        dispatch = buf_full & tgt_ready
        m.d.comb += self.stalled.eq(buf_full & ~tgt_ready)
        last_in_beat = (sub == ipb - 1) | (insns_left == 1)
        with m.If(dispatch):
            m.d.comb += self.dispatched.eq(1)
            m.d.sync += insns_left.eq(insns_left - 1)
            with m.If(last_in_beat):
                m.d.sync += [buf_full.eq(0), sub.eq(0)]
            with m.Else():
                m.d.sync += sub.eq(sub + 1)

        accept = (insns_left != 0) & (~buf_full | (dispatch & last_in_beat & (insns_left != 1)))
        m.d.comb += self.dma.data.ready.eq(accept)
        with m.If(self.dma.data.valid & accept):
            if bpi > 1:
                m.d.sync += buf.word_select(beat, w).eq(self.dma.data.payload)
                with m.If(beat == bpi - 1):
                    m.d.sync += [beat.eq(0), buf_full.eq(1)]
                with m.Else():
                    m.d.sync += beat.eq(beat + 1)
            else:
                m.d.sync += [buf.eq(self.dma.data.payload), buf_full.eq(1)]

        with m.If(self.start):
            total = Signal(33)
            if ipb > 1:
                m.d.comb += total.eq((self.count + ipb - 1) >> (ipb.bit_length() - 1))
            else:
                m.d.comb += total.eq(self.count * bpi)
            m.d.sync += [req_left.eq(total), req_addr.eq(self.addr), insns_left.eq(self.count),
                         buf_full.eq(0), beat.eq(0), sub.eq(0)]
        m.d.comb += self.busy.eq((insns_left != 0) | (req_left != 0))
        return m
