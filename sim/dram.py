"""A flat DRAM image with physical addresses, shared by every simulated target."""

from __future__ import annotations

import numpy as np

__all__ = ["Dram", "DramError"]


class DramError(ValueError):
    """A DRAM access or allocation is out of range."""


class Dram:
    """``size`` bytes of memory mapped at physical byte address ``base``.

    Accelerator instructions address DRAM in elements (physical address / element size);
    helpers here convert. ``alloc`` is a bump allocator for building programs and images.

    Parameters
    ----------
    size : int
        Bytes of memory.
    base : int
        Physical address of the first byte.
    data : bytes-like, optional
        Initial contents (``size`` defaults to its length).
    """

    def __init__(self, size: int | None = None, base: int = 0, data=None):
        if data is not None:
            arr = np.frombuffer(bytes(data), dtype=np.uint8).copy()
            if size is not None and size > arr.size:
                arr = np.concatenate([arr, np.zeros(size - arr.size, np.uint8)])
        else:
            if size is None or size < 0:
                raise DramError(f"DRAM size must be a non-negative integer, not {size!r}")
            arr = np.zeros(size, np.uint8)
        if base < 0 or base + arr.size > 1 << 40:
            raise DramError(f"DRAM base address {base:#x} is out of range")
        self.base = int(base)
        self.mem = arr
        self._next = self.base

    @property
    def size(self) -> int:
        return self.mem.size

    @property
    def end(self) -> int:
        return self.base + self.mem.size

    def check(self, addr: int, nbytes: int, what: str = "access"):
        """Raise :class:`DramError` unless ``[addr, addr + nbytes)`` lies inside the image."""
        if addr < self.base or addr + nbytes > self.end:
            raise DramError(
                f"{what} of {nbytes} bytes at physical address {addr:#x} is outside the DRAM "
                f"image [{self.base:#x}, {self.end:#x})")

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        """A copy of ``nbytes`` bytes at physical address ``addr``."""
        self.check(addr, nbytes, "read")
        off = addr - self.base
        return self.mem[off:off + nbytes].copy()

    def write(self, addr: int, data) -> None:
        """Write bytes (or any array, as its raw little-endian bytes) at ``addr``."""
        buf = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        self.check(addr, buf.size, "write")
        off = addr - self.base
        self.mem[off:off + buf.size] = buf

    def alloc(self, nbytes: int, align: int = 64) -> int:
        """Reserve ``nbytes`` and return their physical address (bump allocation)."""
        addr = -(-self._next // align) * align
        if addr + nbytes > self.end:
            raise DramError(
                f"out of DRAM: cannot allocate {nbytes} bytes at {addr:#x}; the image ends at "
                f"{self.end:#x}")
        self._next = addr + nbytes
        return addr

    def put(self, data, align: int = 64) -> int:
        """Allocate room for ``data``, write it, and return its physical address."""
        buf = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        addr = self.alloc(buf.size, align)
        self.write(addr, buf)
        return addr

    def tobytes(self) -> bytes:
        return self.mem.tobytes()
