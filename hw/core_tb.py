"""Run :class:`~pyvta.hw.core.Core` in the Amaranth simulator against a Python DRAM model.

Used by the RTL unit tests (``tests/test_hw_core.py``): a program built with
:class:`~pyvta.compiler.builder.ProgramBuilder` runs on the core and on the functional
simulator from the same DRAM image, and the two images must be equal. The DRAM model serves
the four DMA ports with the contract of :mod:`pyvta.hw.dma` (read data in request order per
port, one write completion per request) and can insert random stalls on every handshake.

The Python simulator is slow (a few thousand cycles per second): keep programs small. Set
``PYVTA_VCD=path.vcd`` to write a waveform.
"""

from __future__ import annotations

import collections
import os
import random
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from .config import load_config
from .core import COUNTERS, Core

__all__ = ["CoreRun", "CoreTimeout", "run_core", "run_core_sequence"]


class CoreTimeout(RuntimeError):
    """The core did not raise ``done`` within the cycle budget."""


@dataclass
class CoreRun:
    """The outcome of :func:`run_core`."""
    #: Every counter output, by name (see :data:`pyvta.hw.core.COUNTERS`).
    counters: dict
    #: The ``error`` output (:class:`~pyvta.hw.core_errors.CoreError` bits).
    error: int
    #: Cycles from ``start`` to ``done``, as the testbench saw them.
    cycles: int
    #: With ``trace_gemm``: (first, last) cycle in which a GEMM micro-op was issued.
    gemm_window: tuple | None = None

    @property
    def gemm_utilisation(self) -> float:
        """GEMM micro-ops per cycle between the first and the last GEMM micro-op."""
        if not self.gemm_window:
            return 0.0
        first, last = self.gemm_window
        return self.counters["gemm_uops"] / (last - first + 1)


class _ReadPort:
    def __init__(self, port, dram, ab, rng, stall, latency):
        self.port, self.dram, self.ab, self.rng, self.stall = port, dram, ab, rng, stall
        self.latency = latency
        self.beats = collections.deque()  # pending data beats, as ints
        self.ready_at = collections.deque()  # cycle from which each pending beat may be sent
        self.cycle = 0
        self.req_ready = self.data_valid = False

    def drive(self, ctx):
        self.req_ready = self.rng.random() >= self.stall
        self.data_valid = bool(self.beats) and self.ready_at[0] <= self.cycle \
            and self.rng.random() >= self.stall
        ctx.set(self.port.req.ready, self.req_ready)
        ctx.set(self.port.data.valid, self.data_valid)
        if self.data_valid:
            ctx.set(self.port.data.payload, self.beats[0])

    def sample(self, ctx):
        req = None
        if self.req_ready and ctx.get(self.port.req.valid):
            p = ctx.get(self.port.req.payload)
            req = (int(p.addr), int(p.beats))
        took = self.data_valid and ctx.get(self.port.data.ready)
        return req, took

    def commit(self, req, took):
        self.cycle += 1
        if took:
            self.beats.popleft()
            self.ready_at.popleft()
        if req is not None:
            addr, beats = req
            if addr % self.ab or beats < 1:
                raise AssertionError(f"bad DMA read request addr={addr:#x} beats={beats}")
            raw = self.dram.read(addr, beats * self.ab)
            for b in range(beats):
                self.beats.append(int.from_bytes(raw[b * self.ab:(b + 1) * self.ab].tobytes(),
                                                  "little"))
                self.ready_at.append(self.cycle + self.latency)


class _WritePort:
    def __init__(self, port, dram, ab, rng, stall, fail):
        self.port, self.dram, self.ab, self.rng, self.stall = port, dram, ab, rng, stall
        self.fail = fail
        self.reqs = collections.deque()   # [addr, beats_left]
        self.done = collections.deque()   # cycle at which a completion may be returned
        self.cycle = 0
        self.req_ready = self.data_ready = self.done_valid = False

    def drive(self, ctx):
        self.req_ready = self.rng.random() >= self.stall
        self.data_ready = bool(self.reqs) and self.rng.random() >= self.stall
        self.done_valid = bool(self.done) and self.done[0] <= self.cycle
        ctx.set(self.port.req.ready, self.req_ready)
        ctx.set(self.port.data.ready, self.data_ready)
        ctx.set(self.port.done.valid, self.done_valid)
        ctx.set(self.port.done.payload, self.fail)

    def sample(self, ctx):
        req = None
        if self.req_ready and ctx.get(self.port.req.valid):
            p = ctx.get(self.port.req.payload)
            req = (int(p.addr), int(p.beats))
        beat = None
        if self.data_ready and ctx.get(self.port.data.valid):
            beat = int(ctx.get(self.port.data.payload))
        done_taken = self.done_valid and ctx.get(self.port.done.ready)
        return req, beat, done_taken

    def commit(self, req, beat, done_taken):
        self.cycle += 1
        if done_taken:
            self.done.popleft()
        if beat is not None:
            cur = self.reqs[0]
            self.dram.write(cur[0], np.frombuffer(beat.to_bytes(self.ab, "little"), np.uint8))
            cur[0] += self.ab
            cur[1] -= 1
            if cur[1] == 0:
                self.reqs.popleft()
                self.done.append(self.cycle + self.rng.randrange(1, 6))
        if req is not None:
            addr, beats = req
            if addr % self.ab or beats < 1:
                raise AssertionError(f"bad DMA write request addr={addr:#x} beats={beats}")
            self.reqs.append([addr, beats])


def run_core(cfg, dram, insn_addr: int, insn_count: int, **kwargs) -> CoreRun:
    """Run a program already placed in ``dram`` on the RTL core; ``dram`` is updated.

    Keyword arguments are those of :func:`run_core_sequence`.
    """
    return run_core_sequence(cfg, dram, [(insn_addr, insn_count)], **kwargs)[0]


def run_core_sequence(cfg, dram, programs, *, max_cycles: int = 200_000, stall: float = 0.0,
                      seed: int = 0, core: Core | None = None, trace_gemm: bool = False,
                      fail_writes: bool = False, latency: int = 0) -> list:
    """Run several programs one after the other on one core (one simulation).

    Parameters
    ----------
    programs : list of (insn_addr, insn_count)
        Each is started once the previous one raised ``done``.
    max_cycles : int
        Budget per program; :class:`CoreTimeout` if ``done`` does not rise in time.
    stall : float
        Probability in [0, 1) that the DRAM model holds back any handshake in a cycle.
    trace_gemm : bool
        Record the first and last cycle the ``gemm_uops`` counter advanced (slower).
    fail_writes : bool
        Report every write as failed (an AXI error response) on the ``done`` stream.
    latency : int
        Cycles from a read request's acceptance to its first data beat (DRAM latency).
    """
    cfg = load_config(cfg)
    core = core or Core(cfg)
    ab = cfg.axi_bytes
    rng = random.Random(seed)
    results = []

    async def bench(ctx):
        for insn_addr, insn_count in programs:
            reads = [_ReadPort(getattr(core, f"{n}_dma"), dram, ab, rng, stall, latency)
                     for n in ("fetch", "load", "compute")]
            write = _WritePort(core.store_dma, dram, ab, rng, stall, fail_writes)
            ctx.set(core.insn_addr, insn_addr)
            ctx.set(core.insn_count, insn_count)
            ctx.set(core.start, 1)
            await ctx.tick()
            ctx.set(core.start, 0)
            window = None
            last_count = 0
            for cycle in range(1, max_cycles + 1):
                for p in reads:
                    p.drive(ctx)
                write.drive(ctx)
                rs = [p.sample(ctx) for p in reads]
                ws = write.sample(ctx)
                await ctx.tick()
                for p, s in zip(reads, rs):
                    p.commit(*s)
                write.commit(*ws)
                if trace_gemm:
                    count = ctx.get(core.gemm_uops)
                    if count != last_count:
                        # The counter is registered: the micro-op issued in the previous cycle.
                        window = (window[0] if window else cycle - 1, cycle - 1)
                        last_count = count
                if ctx.get(core.done):
                    results.append(CoreRun(
                        counters={n: int(ctx.get(getattr(core, n))) for n in COUNTERS},
                        error=int(ctx.get(core.error)), cycles=cycle, gemm_window=window))
                    break
            else:
                raise CoreTimeout(f"the core did not finish within {max_cycles} cycles")
            for p in reads:
                p.drive(ctx)  # leave the ports idle-ready between runs
            await ctx.tick()

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    vcd = os.environ.get("PYVTA_VCD")
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results
