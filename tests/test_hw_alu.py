"""The RTL ALU lane against the functional simulator's ``alu_apply``, bit for bit."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pyvta.hw.alu import AluLane
from pyvta.hw.isa import AluOp
from pyvta.sim.fsim import alu_apply

EDGES = [0, 1, -1, 2, 31, 32, 33, -31, -32, -33, 63, 64, 127, -128, 0x7FFF, -0x8000,
         0x7FFFFFFF, -0x80000000, 0x12345678, -0x12345678]


@pytest.mark.parametrize("op", list(AluOp), ids=lambda o: o.name)
def test_alu_lane_matches_fsim(op):
    rng = np.random.default_rng(op.value)
    a = np.array(EDGES + list(rng.integers(-2**31, 2**31, 60)), np.int64)
    b = np.array(list(rng.integers(-2**31, 2**31, len(EDGES))) + EDGES[::-1]
                 + list(rng.integers(-70, 70, 40)), np.int64)
    a = np.concatenate([a, rng.integers(-2**31, 2**31, b.size - a.size)]) if a.size < b.size \
        else a[:b.size]
    a, b = a.astype(np.int32), b.astype(np.int32)
    expected = alu_apply(op, a, b)
    dut = AluLane()

    async def bench(ctx):
        ctx.set(dut.op, op)
        for x, y, e in zip(a.tolist(), b.tolist(), expected.tolist()):
            ctx.set(dut.a, x)
            ctx.set(dut.b, y)
            got = ctx.get(dut.out)
            assert got == e, f"{op.name}({x}, {y}) = {got}, fsim says {e}"

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
