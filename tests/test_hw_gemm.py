"""The GEMM core (packed-DSP multiplies, adder tree) against numpy, one tile per cycle."""

import itertools

import numpy as np
import pytest
from amaranth.sim import Simulator

from pyvta.hw.config import load_config
from pyvta.hw.gemm import GemmCore, packed_pair_product


def test_packed_pair_product_exhaustive_corners():
    vals = list(range(-128, 128, 5)) + [-128, -127, -1, 0, 1, 127]
    for x, lo, hi in itertools.product(vals, [-128, -1, 0, 1, 127, 64], vals):
        assert packed_pair_product(x, lo, hi) == (x * lo, x * hi)


@pytest.mark.parametrize("changes", [{}, {"log_batch": 1, "log_block": 2}], ids=["tiny", "b2x4"])
def test_gemm_core_streams_one_tile_per_cycle(changes):
    cfg = load_config("tiny").replace(**changes)
    nb, ni, no = cfg.batch, cfg.block_in, cfg.block_out
    rng = np.random.default_rng(len(changes))
    n = 24
    inp = rng.integers(-128, 128, size=(n, nb, ni), dtype=np.int8)
    wgt = rng.integers(-128, 128, size=(n, no, ni), dtype=np.int8)
    inp[0] = -128
    wgt[0] = -128  # the extreme product, everywhere
    expected = np.einsum("tbi,toi->tbo", inp.astype(np.int64), wgt.astype(np.int64))
    dut = GemmCore(cfg)

    def pack(arr):
        return int.from_bytes(arr.astype(np.int8).tobytes(), "little")

    async def bench(ctx):
        outputs = []
        for t in range(n + GemmCore.LATENCY):
            if t < n:
                ctx.set(dut.inp, pack(inp[t]))
                ctx.set(dut.wgt, pack(wgt[t]))
            if t >= GemmCore.LATENCY:
                raw = ctx.get(dut.sums).to_bytes(nb * no * 4, "little")
                outputs.append(np.frombuffer(raw, "<i4").reshape(nb, no))
            await ctx.tick()
        got = np.stack(outputs)
        assert np.array_equal(got, expected)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
