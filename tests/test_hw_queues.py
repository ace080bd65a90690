"""TokenQueue against a Python model: push/pop handshakes, full/empty blocking, clear."""

import random

import pytest
from amaranth.sim import Simulator

from pyvta.hw.queues import TokenQueue


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_token_queue_matches_model(depth):
    dut = TokenQueue(depth)
    rng = random.Random(depth)

    async def bench(ctx):
        count = 0
        for cycle in range(300):
            push, pop, clear = rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.03
            ctx.set(dut.w.push, push)
            ctx.set(dut.r.pop, pop)
            ctx.set(dut.clear, clear)
            assert ctx.get(dut.w.ready) == (count < depth)
            assert ctx.get(dut.r.valid) == (count > 0)
            assert ctx.get(dut.level) == count
            await ctx.tick()
            if clear:
                count = 0
            else:
                count += (push and count < depth) - (pop and count > 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_token_queue_rejects_bad_depth():
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        TokenQueue(0)
