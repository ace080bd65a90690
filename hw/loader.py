"""DMA-to-SRAM engines shared by the load and compute modules.

* :class:`TileLoader` runs one LOAD of INP, WGT or ACC tiles: 2-D strided DRAM rows, each
  element a whole number of bus beats, with zero padding around the block.
* :class:`UopLoader` runs one LOAD of micro-ops: 4-byte words, several per bus beat, starting
  at any micro-op index (so the first and last beats of a row are partly discarded).

Both issue one DMA request per DRAM row (a whole row per request, as a long burst) ahead of the
data, so several rows are outstanding while the data of earlier ones streams in.
"""

from __future__ import annotations

import functools

from amaranth import Cat, Module, Signal, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .dma import ReadPortSignature
from .isa import MemType, insn_layout
from .queues import SramWriteSignature

__all__ = ["TileLoader", "UopLoader", "uop_load_cycles", "uops_per_word"]


def _log2(n: int) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1


class TileLoader(wiring.Component):
    """Executes one tile LOAD (INP, WGT or ACC) into an SRAM write port.

    Parameters
    ----------
    cfg : HwConfig
    mem_types : sequence of MemType
        The memory types this instance serves (their element sizes come from ``cfg``).

    Ports
    -----
    go : In(1)
        Pulse (only while ``idle``): start the LOAD in ``insn`` (``x_size``, ``y_size`` > 0).
    insn : In(mem_layout)
        The LOAD instruction, sampled with ``go``.
    idle : Out(1)
        No LOAD in progress and every SRAM write done.
    dma : Out(ReadPortSignature)
    wr : Out(SramWriteSignature(16, widest element))
        Element writes; ``wr_type`` tells which buffer (the module decodes it).
    wr_type : Out(MemType)
    dma_stall : Out(1)
        The loader waits for DMA data or for a request to be accepted.
    """

    def __init__(self, cfg, mem_types):
        self._cfg = cfg
        self._layout = insn_layout(cfg).mem_layout
        ebytes = {MemType.INP: cfg.inp_elem_bytes, MemType.WGT: cfg.wgt_elem_bytes,
                  MemType.ACC: cfg.acc_elem_bytes}
        self._types = {t: ebytes[t] for t in mem_types}
        self._elem_bits = max(self._types.values()) * 8
        super().__init__({
            "go": In(1),
            "insn": In(self._layout),
            "idle": Out(1),
            "dma": Out(ReadPortSignature(cfg.axi_data_width)),
            "wr": Out(SramWriteSignature(16, self._elem_bits)),
            "wr_type": Out(MemType),
            "dma_stall": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        w = cfg.axi_data_width
        log_ab = _log2(cfg.axi_bytes)
        max_beats = self._elem_bits // w
        insn = self.insn

        # Element size of the incoming instruction, as shift amounts (all sizes are powers of 2).
        log_eb = Signal(range(32))
        log_beats = Signal(range(32))  # log2 of beats per element
        with m.Switch(insn.memory_type):
            for t, eb in self._types.items():
                with m.Case(t):
                    m.d.comb += [log_eb.eq(_log2(eb)), log_beats.eq(_log2(eb) - log_ab)]

        mtype = Signal(MemType)
        stride = Signal(32)        # DRAM row pitch in bytes
        row_beats = Signal(24)     # beats per DRAM row
        elem_last = Signal(range(max_beats))  # beats per element - 1
        y_lo, y_hi = Signal(17), Signal(17)   # data rows are [y_lo, y_hi) of the block
        x_lo, x_hi = Signal(17), Signal(17)
        last_row, last_col = Signal(17), Signal(17)

        # --- request generator: one request per DRAM row -----------------------------------
        req_active = Signal()
        req_left = Signal(16)
        req_addr = Signal(32)
        m.d.comb += [
            self.dma.req.valid.eq(req_active),
            self.dma.req.payload.addr.eq(req_addr),
            self.dma.req.payload.beats.eq(row_beats),
        ]
        with m.If(self.dma.req.valid & self.dma.req.ready):
            m.d.sync += [req_addr.eq(req_addr + stride), req_left.eq(req_left - 1)]
            with m.If(req_left == 1):
                m.d.sync += req_active.eq(0)

        # --- data consumer: walks the padded SRAM block element by element ------------------
        active = Signal()
        row, col = Signal(17), Signal(17)
        beat = Signal(range(max_beats))
        sram_addr = Signal(16)
        elem = Signal(self._elem_bits)
        w_en, w_zero, w_addr = Signal(), Signal(), Signal(16)
        m.d.comb += [
            self.wr.en.eq(w_en),
            self.wr.addr.eq(w_addr),
            self.wr.data.eq(Mux(w_zero, 0, elem)),
            self.wr_type.eq(mtype),
            self.idle.eq(~active & ~req_active & ~w_en),
        ]

        is_data = (row >= y_lo) & (row < y_hi) & (col >= x_lo) & (col < x_hi)
        advance = Signal()
        m.d.sync += w_en.eq(0)
        with m.If(active):
            with m.If(is_data):
                m.d.comb += self.dma.data.ready.eq(1)
                with m.If(self.dma.data.valid):
                    m.d.sync += elem.word_select(beat, w).eq(self.dma.data.payload)
                    with m.If(beat == elem_last):
                        m.d.sync += [beat.eq(0), w_zero.eq(0)]
                        m.d.comb += advance.eq(1)
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)
            with m.Else():
                m.d.sync += w_zero.eq(1)
                m.d.comb += advance.eq(1)
        with m.If(advance):
            m.d.sync += [w_en.eq(1), w_addr.eq(sram_addr), sram_addr.eq(sram_addr + 1)]
            with m.If(col == last_col):
                m.d.sync += [col.eq(0), row.eq(row + 1)]
                with m.If(row == last_row):
                    m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += col.eq(col + 1)
        m.d.comb += self.dma_stall.eq((active & is_data & ~self.dma.data.valid)
                                      | (req_active & ~self.dma.req.ready))

        # --- start ----------------------------------------------------------------------------
        with m.If(self.go & (insn.x_size != 0) & (insn.y_size != 0)):
            rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
            cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
            m.d.sync += [
                mtype.eq(insn.memory_type),
                stride.eq(insn.x_stride << log_eb),
                row_beats.eq(insn.x_size << log_beats),
                elem_last.eq((1 << log_beats) - 1),
                y_lo.eq(insn.y_pad_0), y_hi.eq(insn.y_pad_0 + insn.y_size),
                x_lo.eq(insn.x_pad_0), x_hi.eq(insn.x_pad_0 + insn.x_size),
                last_row.eq(rows - 1), last_col.eq(cols - 1),
                req_active.eq(1), req_left.eq(insn.y_size),
                req_addr.eq(insn.dram_base << log_eb),
                active.eq(1), row.eq(0), col.eq(0), beat.eq(0),
                sram_addr.eq(insn.sram_base),
            ]
        return m


class UopLoader(wiring.Component):
    """Executes one LOAD of micro-ops: ``y_size`` rows of ``x_size`` 4-byte words.

    The micro-op buffer is organised in words of ``upb`` micro-ops (``upb`` = micro-ops per
    bus beat: 2 on a 64-bit bus, 4 on a 128-bit one) with one write enable per micro-op, so
    the loader writes several micro-ops per cycle. A DRAM row may start at any micro-op index:
    the request starts at the beat holding it. Each cycle the loader writes the run of
    micro-ops that lies both in the current beat and in one buffer word, i.e.
    ``min(upb - d, upb - s, left)`` micro-ops, where ``d`` and ``s`` are the next micro-op's
    positions within the beat and within the buffer word. When the DRAM and buffer indices
    agree modulo ``upb`` (the compiler places micro-op kernels so) this is one whole beat per
    cycle; otherwise up to two cycles per beat.

    Ports
    -----
    go, insn, idle, dma, dma_stall
        As :class:`TileLoader`.
    wr : Out(SramWriteSignature(log2(uop depth / upb), 32 * upb))
        Word writes; ``wr_lanes`` selects the micro-ops of the word written.
    wr_lanes : Out(upb)
    """

    def __init__(self, cfg):
        self._cfg = cfg
        self._layout = insn_layout(cfg).mem_layout
        upb = uops_per_word(cfg)
        super().__init__({
            "go": In(1),
            "insn": In(self._layout),
            "idle": Out(1),
            "dma": Out(ReadPortSignature(cfg.axi_data_width)),
            "wr": Out(SramWriteSignature(cfg.log_uop_depth - _log2(upb), 32 * upb)),
            "wr_lanes": Out(upb),
            "dma_stall": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        ab = cfg.axi_bytes
        log_ab = _log2(ab)
        upb = uops_per_word(cfg)
        lu = _log2(upb)
        insn = self.insn

        stride = Signal(34)   # bytes
        x_size = Signal(16)

        # --- request generator ----------------------------------------------------------------
        req_active = Signal()
        req_left = Signal(16)
        req_row = Signal(34)  # byte address of the row's first micro-op
        first_off = req_row[:log_ab]
        m.d.comb += [
            self.dma.req.valid.eq(req_active),
            self.dma.req.payload.addr.eq(req_row[log_ab:32] << log_ab),
            self.dma.req.payload.beats.eq((first_off + (x_size << 2) + (ab - 1)) >> log_ab),
        ]
        with m.If(self.dma.req.valid & self.dma.req.ready):
            m.d.sync += [req_row.eq(req_row + stride), req_left.eq(req_left - 1)]
            with m.If(req_left == 1):
                m.d.sync += req_active.eq(0)

        # --- data consumer --------------------------------------------------------------------
        active = Signal()
        rows_left = Signal(16)
        left = Signal(16)       # micro-ops left in this row
        row_byte = Signal(34)
        cur = Signal(34)        # byte address of the next micro-op
        sram_addr = Signal(cfg.log_uop_depth)
        beat = self.dma.data.payload
        d = cur[2:log_ab]                 # position of the next micro-op in the beat
        s = sram_addr[:lu]                # ... and in the buffer word
        # Micro-ops written this cycle: the rest of the beat, of the word and of the row.
        room = Signal(range(upb + 1))
        m.d.comb += room.eq(Mux(d > s, upb - d, upb - s))
        n = Signal(range(upb + 1))
        m.d.comb += n.eq(Mux(left < room, left, room))
        # Buffer lane j takes beat word (j + d - s) mod upb.
        rot = Signal(lu)
        m.d.comb += rot.eq(d - s)
        word = Signal(32 * upb)
        with m.Switch(rot):
            for r in range(upb):
                with m.Case(r):
                    m.d.comb += word.eq(Cat(beat.word_select((j + r) % upb, 32)
                                            for j in range(upb)))
        lanes = Signal(upb)
        m.d.comb += lanes.eq(Cat((s <= j) & (j < s + n) for j in range(upb)))
        last_in_row = n == left
        m.d.comb += [
            self.wr.addr.eq(sram_addr[lu:]),
            self.wr.data.eq(word),
            self.wr.en.eq(active & self.dma.data.valid),
            self.wr_lanes.eq(Mux(active & self.dma.data.valid, lanes, 0)),
            self.dma.data.ready.eq(active & ((d + n == upb) | last_in_row)),
            self.idle.eq(~active & ~req_active),
            self.dma_stall.eq((active & ~self.dma.data.valid)
                              | (req_active & ~self.dma.req.ready)),
        ]
        with m.If(active & self.dma.data.valid):
            m.d.sync += sram_addr.eq(sram_addr + n)
            with m.If(last_in_row):
                m.d.sync += [row_byte.eq(row_byte + stride), cur.eq(row_byte + stride),
                             left.eq(x_size), rows_left.eq(rows_left - 1)]
                with m.If(rows_left == 1):
                    m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += [cur.eq(cur + (n << 2)), left.eq(left - n)]

        with m.If(self.go & (insn.x_size != 0) & (insn.y_size != 0)):
            base = insn.dram_base << 2
            m.d.sync += [
                stride.eq(insn.x_stride << 2), x_size.eq(insn.x_size),
                req_active.eq(1), req_left.eq(insn.y_size), req_row.eq(base),
                active.eq(1), rows_left.eq(insn.y_size), left.eq(insn.x_size),
                row_byte.eq(base), cur.eq(base), sram_addr.eq(insn.sram_base),
            ]
        return m


def uops_per_word(cfg) -> int:
    """Micro-ops per word of the micro-op buffer: one bus beat's worth (4-byte micro-ops; the
    buffer holds at least 4)."""
    return cfg.axi_bytes // 4


def uop_load_cycles(upb: int, dram_idx: int, sram_idx: int, count: int) -> int:
    """Cycles :class:`UopLoader` spends writing one row of ``count`` micro-ops read from DRAM
    micro-op index ``dram_idx`` to buffer index ``sram_idx`` (given the data; shared with
    the timing model)."""
    return _uop_row_cycles(upb, dram_idx % upb, sram_idx % upb, count)


@functools.lru_cache(maxsize=4096)
def _uop_row_cycles(upb: int, d: int, s: int, count: int) -> int:
    if count <= 0:
        return 0
    if d == s:  # aligned: one beat per cycle
        return -(-(d + count) // upb)
    # Misaligned: d - s stays the same modulo upb, so every step ends at a beat or a word edge.
    cycles = 0
    while count > 0:
        n = min(upb - d, upb - s, count)
        d, s, count, cycles = (d + n) % upb, (s + n) % upb, count - n, cycles + 1
    return cycles
