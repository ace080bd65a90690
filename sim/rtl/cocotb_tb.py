"""cocotb test module run inside the simulator by ``pyvta.sim.rtl`` (not imported otherwise).

It reads a JSON manifest (environment variable ``PYVTA_RTL_MANIFEST``) listing jobs, and for
each job: loads the DRAM model from a hex file, starts the accelerator through its AXI4-Lite
registers, waits for the interrupt (Python sleeps meanwhile: the clock and the DRAM model run
inside the simulator), reads the status and counter registers, and has the DRAM model dump
the words written. Results go to the JSON file the manifest names.
"""

import json
import os
import shutil

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge, with_timeout

try:  # cocotb 2.x
    from cocotb.triggers import SimTimeoutError
except ImportError:  # pragma: no cover
    from cocotb.result import SimTimeoutError

CLOCK_NS = 10


def _int(value) -> int:
    """A signal's value as an int; -1 if it holds X or Z bits (reported, never hidden)."""
    try:
        return int(value)
    except ValueError:
        return -1


class TB:
    """Owns the clock, reset, the AXI4-Lite master and the DRAM model's controls."""

    def __init__(self, dut, regs, clk):
        self.dut = dut
        self.regs = regs
        self.clk = clk

    async def reset(self):
        dut = self.dut
        for name in ("awvalid", "wvalid", "bready", "arvalid", "rready"):
            getattr(dut, f"s_axi_control_{name}").value = 0
        dut.s_axi_control_awaddr.value = 0
        dut.s_axi_control_araddr.value = 0
        dut.s_axi_control_wdata.value = 0
        dut.s_axi_control_wstrb.value = 0
        for name, value in (("base", 0), ("latency", 0), ("stall", 0), ("seed", 1),
                            ("load", 0), ("dump", 0), ("clear_words", 0)):
            getattr(dut, f"dram_{name}").value = value
        dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(self.clk)
        dut.rst.value = 0
        # The wrapper registers rst (and the DRAM controls): two edges until it is released.
        for _ in range(2):
            await RisingEdge(self.clk)

    async def _wait(self, signal):
        # Sample at the end of the time step (combinational READY/VALID settled), then take
        # the clock edge that completes the handshake.
        while True:
            await ReadOnly()
            seen = _int(signal.value) == 1
            await RisingEdge(self.clk)
            if seen:
                return

    async def write(self, name, value):
        dut = self.dut
        dut.s_axi_control_awaddr.value = self.regs[name]
        dut.s_axi_control_wdata.value = value & 0xFFFF_FFFF
        dut.s_axi_control_wstrb.value = 0xF
        dut.s_axi_control_awvalid.value = 1
        dut.s_axi_control_wvalid.value = 1
        await self._wait(dut.s_axi_control_awready)
        dut.s_axi_control_awvalid.value = 0
        dut.s_axi_control_wvalid.value = 0
        dut.s_axi_control_bready.value = 1
        await self._wait(dut.s_axi_control_bvalid)
        dut.s_axi_control_bready.value = 0

    async def read(self, name):
        dut = self.dut
        dut.s_axi_control_araddr.value = self.regs[name]
        dut.s_axi_control_arvalid.value = 1
        await self._wait(dut.s_axi_control_arready)
        dut.s_axi_control_arvalid.value = 0
        dut.s_axi_control_rready.value = 1
        while True:
            await ReadOnly()
            valid, data = _int(dut.s_axi_control_rvalid.value), _int(dut.s_axi_control_rdata.value)
            await RisingEdge(self.clk)
            if valid == 1:
                break
        dut.s_axi_control_rready.value = 0
        return data

    async def pulse(self, signal):
        # The wrapper registers the DRAM controls, so the model acts on the second edge; a
        # RisingEdge resumes Python before that edge's logic runs, hence the third edge.
        signal.value = 1
        await RisingEdge(self.clk)
        signal.value = 0
        for _ in range(2):
            await RisingEdge(self.clk)


async def run_job(tb, job, files):
    dut = tb.dut
    shutil.copyfile(job["hex"], files["in"])
    dut.dram_base.value = job["base"]
    dut.dram_latency.value = job["latency"]
    dut.dram_stall.value = job["stall"]
    dut.dram_seed.value = job["seed"]
    dut.dram_clear_words.value = job["clear_words"]
    await tb.pulse(dut.dram_load)
    result = {"name": job.get("name", "")}
    result["id"] = {name: await tb.read(name) for name in job["id_regs"]}
    await tb.write("INSN_ADDR", job["insn_addr"])
    await tb.write("INSN_COUNT", job["insn_count"])
    await tb.write("IRQ_ENABLE", 1)
    await tb.write("CONTROL", 1)
    try:
        await with_timeout(RisingEdge(dut.interrupt), job["max_cycles"] * CLOCK_NS, "ns")
        result["timeout"] = False
    except SimTimeoutError:
        result["timeout"] = True
    result["regs"] = {name: await tb.read(name) for name in job["read_regs"]}
    if not result["timeout"]:
        await tb.write("IRQ_STATUS", 1)
        result["irq_after_clear"] = int(dut.interrupt.value)
    if os.path.exists(files["out"]):
        os.remove(files["out"])
    await tb.pulse(dut.dram_dump)
    written = int(dut.dram_written.value)
    result["written"] = bool(written)
    result["wmin"] = int(dut.dram_wmin.value)
    result["wmax"] = int(dut.dram_wmax.value)
    result["protocol_errors"] = int(dut.dram_protocol_errors.value)
    result["beats_read"] = int(dut.dram_beats_read.value)
    result["beats_written"] = int(dut.dram_beats_written.value)
    if written:
        shutil.move(files["out"], job["out"])
    return result


@cocotb.test()
async def run_manifest(dut):
    """Run every job of the manifest in this one simulator session."""
    with open(os.environ["PYVTA_RTL_MANIFEST"]) as f:
        manifest = json.load(f)
    if manifest.get("internal_clock"):
        clk = dut.clk_gen  # generated inside the design (no VPI call per edge)
    else:
        Clock(dut.clk, CLOCK_NS, unit="ns").start()
        clk = dut.clk
    tb = TB(dut, manifest["regs"], clk)
    await tb.reset()
    results = []
    for job in manifest["jobs"]:
        result = await run_job(tb, job, manifest["files"])
        results.append(result)
        # Write after every job, so a crash still leaves the earlier results.
        with open(manifest["result"], "w") as f:
            json.dump(results, f)
        if result["timeout"]:
            await tb.reset()  # the accelerator is stuck: reset it for the next job
