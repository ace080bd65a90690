"""The tensor ALU: one int32 lane of MIN, MAX, ADD, SHR, MUL (combinational).

Semantics are those of :func:`pyvta.sim.fsim.alu_apply`: wrap-around int32; SHR takes the
operand's low 6 bits as a signed amount in [-32, 31], a negative amount shifting left (by up
to 32, which gives 0).
"""


from amaranth import Module, Signal, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .isa import AluOp

__all__ = ["AluLane", "mul_low32"]


def mul_low32(a, b):
    """The low 32 bits of ``a * b`` from three 16x16 products.

    A full 32x32 multiply costs many DSP48E1 per lane; only the low word is needed, so
    ``a * b mod 2**32 = al*bl + ((ah*bl + al*bh) mod 2**16) * 2**16`` with 16-bit halves:
    three 16x16 multipliers (one DSP48E1 each), signedness irrelevant modulo 2**32.
    """
    al, ah = a[:16], a[16:32]
    bl, bh = b[:16], b[16:32]
    cross = (ah * bl)[:16] + (al * bh)[:16]
    return (al * bl + (cross[:16] << 16))[:32]


class AluLane(wiring.Component):
    """``out = op(a, b)`` on one int32 lane.

    Ports
    -----
    op : In(AluOp)
    a, b : In(signed(32))
    out : Out(signed(32))
    """

    op: In(AluOp)
    a: In(signed(32))
    b: In(signed(32))
    out: Out(signed(32))

    def elaborate(self, platform):
        m = Module()
        a, b = self.a, self.b
        amount = b[:6].as_signed()          # [-32, 31]
        left_by = Signal(6)
        m.d.comb += left_by.eq(-amount)     # 1..32 when amount is negative
        shifted = Mux(amount >= 0, a >> amount[:5], (a << left_by)[:32])
        with m.Switch(self.op):
            with m.Case(AluOp.MIN):
                m.d.comb += self.out.eq(Mux(a < b, a, b))
            with m.Case(AluOp.MAX):
                m.d.comb += self.out.eq(Mux(a > b, a, b))
            with m.Case(AluOp.ADD):
                m.d.comb += self.out.eq(a + b)
            with m.Case(AluOp.SHR):
                m.d.comb += self.out.eq(shifted)
            with m.Case(AluOp.MUL):
                m.d.comb += self.out.eq(mul_low32(a, b))
        return m
