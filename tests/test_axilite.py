"""The register map (hw/regmap.py) and its AXI4-Lite slave (hw/axilite.py), in the Amaranth
simulator."""

import json

import pytest
from amaranth.sim import Simulator

from pyvta.hw.axilite import AxiLiteRegisters
from pyvta.hw.regmap import MAGIC, fingerprint_hash, register_map


def test_regmap_is_consistent_and_exported():
    rm = register_map("pynq-z1")
    offsets = [r.offset for r in rm]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 for o in offsets)
    assert rm["MAGIC"].reset == MAGIC
    assert rm["ID_HASH"].reset == fingerprint_hash(rm.cfg)
    assert register_map("tiny")["ID_HASH"].reset != rm["ID_HASH"].reset
    doc = json.loads(rm.to_json())
    assert doc["fingerprint"] == "1x16_i8w8a32_15_15_18_17"
    assert {r["name"] for r in doc["registers"]} >= {"CONTROL", "STATUS", "IRQ_ENABLE",
                                                    "IRQ_STATUS", "INSN_ADDR", "INSN_COUNT",
                                                    "CYCLES", "ERROR", "GEMM_UOPS"}
    # ID_GEOMETRY packs log_block in bits 4..7 and log2(AXI bytes) in bits 20..23.
    geo = rm["ID_GEOMETRY"].reset
    assert (geo >> 4) & 0xF == 4 and (geo >> 20) & 0xF == 3
    with pytest.raises(KeyError, match="no register named 'NOPE'"):
        rm["NOPE"]


def test_axilite_slave_behaviour():
    rm = register_map("tiny")
    dut = AxiLiteRegisters(rm)
    bus = dut.bus
    log = {}

    async def write(ctx, offset, value):
        ctx.set(bus.awaddr, offset)
        ctx.set(bus.wdata, value)
        ctx.set(bus.wstrb, 0xF)
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        ctx.set(bus.bready, 1)
        start = 0
        while True:
            _, _, ready, st = await ctx.tick().sample(bus.awready, dut.start)
            start |= st
            if ready:
                break
        ctx.set(bus.awvalid, 0)
        ctx.set(bus.wvalid, 0)
        while True:
            _, _, valid, resp = await ctx.tick().sample(bus.bvalid, bus.bresp)
            if valid:
                break
        ctx.set(bus.bready, 0)
        return resp, start

    async def read(ctx, offset):
        ctx.set(bus.araddr, offset)
        ctx.set(bus.arvalid, 1)
        ctx.set(bus.rready, 1)
        while True:
            _, _, ready = await ctx.tick().sample(bus.arready)
            if ready:
                break
        ctx.set(bus.arvalid, 0)
        while True:
            _, _, valid, data, resp = await ctx.tick().sample(bus.rvalid, bus.rdata, bus.rresp)
            if valid:
                break
        ctx.set(bus.rready, 0)
        return data, resp

    async def bench(ctx):
        off = rm.offset
        log["magic"] = await read(ctx, off("MAGIC"))
        log["hash"] = await read(ctx, off("ID_HASH"))
        log["unmapped_read"] = await read(ctx, 0x3C)
        log["unmapped_write"] = (await write(ctx, 0x3C, 1))[0]
        await write(ctx, off("INSN_ADDR"), 0x1008)           # not 16-byte aligned
        await write(ctx, off("INSN_COUNT"), 7)
        log["refused_start"] = (await write(ctx, off("CONTROL"), 1))[1]
        log["error_bad_addr"] = (await read(ctx, off("ERROR")))[0]
        await write(ctx, off("INSN_ADDR"), 0x1000)
        log["start"] = (await write(ctx, off("CONTROL"), 1))[1]
        log["error_cleared"] = (await read(ctx, off("ERROR")))[0]
        log["insn"] = ((await read(ctx, off("INSN_ADDR")))[0],
                       (await read(ctx, off("INSN_COUNT")))[0])
        # The core finishes: done rises, the interrupt follows once enabled.
        ctx.set(dut.done, 1)
        ctx.set(dut.cycles, 1234)
        await ctx.tick()
        log["irq_disabled"] = ctx.get(dut.interrupt)
        await write(ctx, off("IRQ_ENABLE"), 1)
        await ctx.tick()
        log["irq_enabled"] = ctx.get(dut.interrupt)
        log["status"] = (await read(ctx, off("STATUS")))[0]
        log["cycles"] = (await read(ctx, off("CYCLES")))[0]
        await write(ctx, off("IRQ_STATUS"), 1)              # write 1 to clear
        await ctx.tick()
        log["irq_cleared"] = ctx.get(dut.interrupt)
        log["ro_write"] = (await write(ctx, off("MAGIC"), 0))[0]
        log["magic_after"] = (await read(ctx, off("MAGIC")))[0]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert log["magic"] == (MAGIC, 0)
    assert log["hash"] == (fingerprint_hash(rm.cfg), 0)
    assert log["unmapped_read"][1] == 0b10 and log["unmapped_write"] == 0b10
    assert not log["refused_start"] and log["error_bad_addr"] == 1 << 10
    assert log["start"] and log["error_cleared"] == 0
    assert log["insn"] == (0x1000, 7)
    assert log["irq_disabled"] == 0 and log["irq_enabled"] == 1
    assert log["status"] == 1 and log["cycles"] == 1234
    assert log["irq_cleared"] == 0
    assert log["ro_write"] == 0 and log["magic_after"] == MAGIC
