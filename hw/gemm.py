"""The GEMM core: BATCH x BLOCK_IN x BLOCK_OUT int8 multiply-accumulates per cycle.

Pipelined, one tile product per cycle, :attr:`GemmCore.LATENCY` cycles from operands to sums.

DSP packing: an xc7z020 has 220 DSP48E1, fewer than the 256 multiplies of the default 16x16
array. For a fixed input element ``x = inp[b][i]`` the two products ``x * wgt[2m][i]`` and
``x * wgt[2m+1][i]`` share an operand, so one 25x18 multiplier computes both::

    p = x * (w_hi * 2**16 + w_lo) = (x * w_hi) * 2**16 + x * w_lo

``x * w_lo`` lies in [-16256, 16384], inside a signed 16-bit field, so the low product is
``p[0:16]`` read as signed and the high one is ``p[16:]`` plus the borrow ``p[15]`` (the sign
of the low product). That halves the multipliers: 128 DSP48E1 for the default array.
"""

from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["GemmCore", "packed_pair_product"]

#: Bit offset of the second weight in a packed multiplier operand.
PACK_SHIFT = 16
#: Terms summed per adder-tree stage before a pipeline register.
TREE_GROUP = 4


def packed_pair_product(x: int, w_lo: int, w_hi: int) -> tuple[int, int]:
    """Software model of the packed multiply: ``(x * w_lo, x * w_hi)`` recovered from one
    product, exactly as the hardware does it (used by the tests)."""
    p = x * ((w_hi << PACK_SHIFT) + w_lo)
    lo = p & 0xFFFF
    lo = lo - 0x10000 if lo & 0x8000 else lo
    hi = (p >> PACK_SHIFT) + ((p >> 15) & 1)
    return lo, hi


class GemmCore(wiring.Component):
    """``sums[b][o] = sum_i inp[b][i] * wgt[o][i]`` with a fixed latency.

    Ports
    -----
    inp : In(BATCH * BLOCK_IN * 8)
        An INP element as stored in SRAM (int8, byte ``b * BLOCK_IN + i``).
    wgt : In(BLOCK_OUT * BLOCK_IN * 8)
        A WGT element as stored in SRAM (int8, byte ``o * BLOCK_IN + i``).
    sums : Out(BATCH * BLOCK_OUT * 32)
        The products, one int32 lane per ``b * BLOCK_OUT + o`` (the ACC element layout),
        :attr:`LATENCY` cycles after the operands.
    """

    #: Cycles from ``inp``/``wgt`` to ``sums``.
    LATENCY = 4

    def __init__(self, cfg):
        self._cfg = cfg
        if cfg.block_out % 2:
            raise ValueError(f"BLOCK_OUT must be even for DSP packing, not {cfg.block_out}")
        super().__init__({
            "inp": In(cfg.batch * cfg.block_in * 8),
            "wgt": In(cfg.block_out * cfg.block_in * 8),
            "sums": Out(cfg.batch * cfg.block_out * 32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        nb, ni, no = cfg.batch, cfg.block_in, cfg.block_out

        def inp(b, i):
            return self.inp.word_select(b * ni + i, 8).as_signed()

        def wgt(o, i):
            return self.wgt.word_select(o * ni + i, 8).as_signed()

        # Stage 1: operands, with each pair of weights packed into one multiplier operand.
        x = [[Signal(signed(8), name=f"x_{b}_{i}") for i in range(ni)] for b in range(nb)]
        pk = [[Signal(signed(PACK_SHIFT + 9), name=f"pk_{p}_{i}") for i in range(ni)]
              for p in range(no // 2)]
        for b in range(nb):
            for i in range(ni):
                m.d.sync += x[b][i].eq(inp(b, i))
        for p in range(no // 2):
            for i in range(ni):
                m.d.sync += pk[p][i].eq((wgt(2 * p + 1, i) << PACK_SHIFT) + wgt(2 * p, i))

        # Stage 2: one multiplier per (b, pair, i).
        prod = {}
        for b in range(nb):
            for p in range(no // 2):
                for i in range(ni):
                    s = Signal(signed(PACK_SHIFT + 17), name=f"p_{b}_{p}_{i}")
                    m.d.sync += s.eq(x[b][i] * pk[p][i])
                    prod[b, p, i] = s

        # Unpack: the two int16 products of each multiplier.
        def term(b, o, i):
            p = prod[b, o // 2, i]
            if o % 2 == 0:
                return p[:PACK_SHIFT].as_signed()
            return p[PACK_SHIFT:].as_signed() + p[PACK_SHIFT - 1]

        # Stages 3 and 4: adder tree, registered after groups of TREE_GROUP terms.
        sum_width = 17 + ni.bit_length()
        for b in range(nb):
            for o in range(no):
                partial = []
                for g in range(0, ni, TREE_GROUP):
                    s = Signal(signed(sum_width), name=f"ps_{b}_{o}_{g // TREE_GROUP}")
                    m.d.sync += s.eq(sum(term(b, o, i) for i in range(g, min(ni, g + TREE_GROUP))))
                    partial.append(s)
                total = Signal(signed(sum_width), name=f"sum_{b}_{o}")
                m.d.sync += total.eq(sum(partial))
                m.d.comb += self.sums.word_select(b * no + o, 32).eq(total)
        return m
