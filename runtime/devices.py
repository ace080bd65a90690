"""The device protocol the runtime drives, and its simulator implementations.

A device is a flat DRAM shared with one accelerator:

* ``alloc(nbytes) -> addr``: reserve a 4096-aligned region (physical byte address),
* ``write(addr, data)`` / ``read(addr, nbytes)``: copy bytes in and out,
* ``run(insns) -> RunStats``: execute an instruction stream (DRAM addresses already
  relocated to the region) until FINISH,
* ``counters()``: what the last run reported.

:class:`FsimDevice` runs on the functional simulator (``sim/fsim.py``), :class:`RtlDevice` on
the cycle-accurate RTL simulation (``sim/rtl.py``); a board device (PYNQ) implements the same
five methods with physically contiguous buffers and the accelerator's registers.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..hw.config import HwConfig, load_config

__all__ = ["Device", "RunStats", "FsimDevice", "RtlDevice", "make_device", "TARGETS",
           "DeviceError", "REGION_ALIGN"]

#: Targets :func:`make_device` knows ("cpu" has no device: everything runs on the host).
TARGETS = ("cpu", "fsim", "rtl")
#: Regions are page-aligned (``AccelProgram.relocated_insns`` requires 4096).
REGION_ALIGN = 4096


class DeviceError(RuntimeError):
    """A device cannot be created or a run failed."""


@dataclass
class RunStats:
    """One program run: wall time, cycles (``None`` where the device has no clock) and
    device counters."""
    seconds: float
    cycles: int | None = None
    counters: dict = field(default_factory=dict)


class Device:
    """Base class: a growable host-side DRAM image with a bump allocator.

    Subclasses implement :meth:`run`.
    """

    name = "device"

    def __init__(self, cfg: HwConfig | str | None = None, base: int = REGION_ALIGN):
        self.cfg = load_config(cfg)
        # Address 0 stays unused so a zero address is never a valid buffer.
        self.base = base
        self._mem = np.zeros(0, np.uint8)
        self._next = base
        self._last = RunStats(0.0)

    @property
    def size(self) -> int:
        """Bytes allocated so far (from address 0)."""
        return self._next

    def alloc(self, nbytes: int, align: int = REGION_ALIGN) -> int:
        """Reserve ``nbytes`` at an ``align``-aligned physical address and return it."""
        if nbytes < 0:
            raise ValueError(f"cannot allocate {nbytes} bytes")
        addr = -(-self._next // align) * align
        self._next = addr + nbytes
        self._grow(self._next)
        return addr

    def _grow(self, end: int):
        if end > self._mem.size:
            grown = np.zeros(-(-end // REGION_ALIGN) * REGION_ALIGN, np.uint8)
            grown[:self._mem.size] = self._mem
            self._mem = grown

    def _check(self, addr: int, nbytes: int, what: str):
        if addr < 0 or addr + nbytes > self._next:
            raise DeviceError(f"{what} of {nbytes} bytes at {addr:#x} is outside the allocated "
                              f"memory [0, {self._next:#x})")

    def write(self, addr: int, data) -> None:
        """Copy ``data`` (bytes or an array's raw bytes) to ``addr``."""
        buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) \
            else np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        self._check(addr, buf.size, "write")
        self._mem[addr:addr + buf.size] = buf

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        """A copy of ``nbytes`` bytes at ``addr`` (uint8 array)."""
        self._check(addr, nbytes, "read")
        return self._mem[addr:addr + nbytes].copy()

    def run(self, insns: bytes) -> RunStats:
        raise NotImplementedError

    def counters(self) -> dict:
        """Counters of the last :meth:`run` (cycles included where the device has them)."""
        out = dict(self._last.counters)
        if self._last.cycles is not None:
            out["cycles"] = self._last.cycles
        return out

    def close(self) -> None:
        """Release the device (simulators hold nothing; a board frees its buffers)."""


class FsimDevice(Device):
    """The functional simulator: bit-exact, instruction counts but no cycles."""

    name = "fsim"

    def run(self, insns: bytes) -> RunStats:
        from ..sim.dram import Dram
        from ..sim.fsim import FunctionalSimulator
        t0 = time.perf_counter()
        # A Dram view over the device image: the simulator writes straight into it.
        dram = Dram(0)
        dram.mem = self._mem
        counters = FunctionalSimulator(self.cfg, dram).run(insns)
        self._last = RunStats(time.perf_counter() - t0, None, counters.to_dict())
        return self._last


class RtlDevice(Device):
    """The cycle-accurate RTL simulation (cocotb + Verilator or Icarus).

    Creating it checks that the simulator is installed (a missing tool is a
    :class:`DeviceError` saying what to install); the simulator itself is built on the first
    :meth:`run` (cached across processes by ``sim/rtl.py``).
    """

    name = "rtl"

    def __init__(self, cfg=None, simulator: str = "verilator", progress=None, **job_opts):
        super().__init__(cfg)
        from ..sim.rtl import RtlSimulator, SimulatorNotFound
        try:
            self.sim = RtlSimulator(self.cfg, simulator)
        except SimulatorNotFound as exc:
            raise DeviceError(f"target 'rtl' needs the {simulator} simulator: {exc}; or use "
                              f"--target fsim (functional simulator, no tools needed)") from None
        self.simulator = simulator
        self.job_opts = job_opts
        self.progress = progress

    def run(self, insns: bytes) -> RunStats:
        from ..sim.rtl import RtlJob
        t0 = time.perf_counter()
        if self.progress:
            self.progress(f"rtl: running {len(insns) // 16} instructions on {self.simulator} "
                          f"({self._next} bytes of DRAM); building the simulator first if "
                          f"needed")
        done = threading.Event()
        if self.progress:
            def heartbeat():
                # A build plus a long program can take minutes: say that it is alive.
                while not done.wait(15.0):
                    self.progress(f"rtl: still running ({time.perf_counter() - t0:.0f} s)")
            threading.Thread(target=heartbeat, daemon=True).start()
        try:
            (res,) = self.sim.run([RtlJob(bytes(insns), self._mem[:self._next].tobytes(), 0,
                                          **self.job_opts)])
        finally:
            done.set()
        if res.timeout:
            raise DeviceError(f"the accelerator did not finish within the cycle limit "
                              f"(STATUS={res.regs.get('STATUS', 0):#x}, ERROR={res.error:#x})")
        if res.error:
            raise DeviceError(f"the accelerator reported ERROR={res.error:#x}")
        if res.protocol_errors:
            raise DeviceError(f"the DRAM model saw {res.protocol_errors} AXI protocol error(s)")
        out = np.frombuffer(res.dram, np.uint8)
        n = min(out.size, self._next)
        self._mem[:n] = out[:n]
        self._last = RunStats(time.perf_counter() - t0, int(res.cycles),
                              dict(res.counters.counters))
        if self.progress:
            self.progress(f"rtl: done, {res.cycles} cycles in {self._last.seconds:.1f} s")
        return self._last


def make_device(target: str, cfg=None, simulator: str = "verilator", progress=None):
    """The device of ``target`` (``None`` for ``"cpu"``)."""
    if target == "cpu":
        return None
    if target == "fsim":
        return FsimDevice(cfg)
    if target == "rtl":
        return RtlDevice(cfg, simulator, progress=progress)
    raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
