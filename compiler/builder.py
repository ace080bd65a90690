"""A small program builder: write VTA programs instruction by instruction.

Used by the conformance tests, the benchmarks and the compiler's code generator. It knows the
ISA's field names and element sizes, places micro-op kernels in DRAM, and tracks nothing
implicit about dependency tokens: every ``pop_*`` / ``push_*`` is stated by the caller, as in
VTA's own runtime.
"""

from __future__ import annotations

import numpy as np

from ..hw.config import HwConfig, load_config
from ..hw.isa import (AluInsn, AluOp, FinishInsn, GemmInsn, MemInsn, MemType, Opcode, Uop,
                      encode_program, encode_uops)
from ..sim.dram import Dram

__all__ = ["ProgramBuilder", "UopKernel"]


class UopKernel:
    """Micro-ops placed in DRAM: ``count`` words at element address ``dram_elem``."""

    def __init__(self, uops, dram_elem: int):
        self.uops = list(uops)
        self.dram_elem = dram_elem

    def __len__(self):
        return len(self.uops)


def _deps(kw):
    return {k: bool(kw.pop(k, False)) for k in
            ("pop_prev_dep", "pop_next_dep", "push_prev_dep", "push_next_dep")}


class ProgramBuilder:
    """Accumulates instructions and the DRAM data they refer to.

    Parameters
    ----------
    cfg : HwConfig or str
        Hardware configuration (or preset name).
    dram : Dram, optional
        Where tensors and micro-op kernels are placed (a 64 MiB image at 0 by default).
    """

    def __init__(self, cfg: HwConfig | str = None, dram: Dram | None = None):
        self.cfg = load_config(cfg)
        self.dram = dram if dram is not None else Dram(64 << 20)
        self.insns: list = []

    # --- data -------------------------------------------------------------------------------
    def elem_bytes(self, mem: MemType) -> int:
        c = self.cfg
        return {MemType.UOP: c.uop_elem_bytes, MemType.INP: c.inp_elem_bytes,
                MemType.WGT: c.wgt_elem_bytes, MemType.ACC: c.acc_elem_bytes,
                MemType.OUT: c.out_elem_bytes}[mem]

    def put(self, mem: MemType, array, *, align: int | None = None) -> int:
        """Place ``array`` (already in element order) in DRAM; return its element address."""
        eb = self.elem_bytes(mem)
        addr = self.dram.put(np.ascontiguousarray(array), align=max(eb, align or 64))
        return addr // eb

    def reserve(self, mem: MemType, count: int) -> int:
        """Reserve ``count`` elements of DRAM (e.g. for outputs); return the element address."""
        eb = self.elem_bytes(mem)
        return self.dram.alloc(count * eb, align=max(eb, 64)) // eb

    def read(self, mem: MemType, elem: int, count: int, dtype=np.int8) -> np.ndarray:
        """Read ``count`` elements back from DRAM as a flat array of ``dtype``."""
        eb = self.elem_bytes(mem)
        return self.dram.read(elem * eb, count * eb).view(dtype)

    def uop_kernel(self, uops) -> UopKernel:
        """Encode micro-ops (``Uop`` or ``(dst, src, wgt)`` tuples) into DRAM."""
        uops = [u if isinstance(u, Uop) else Uop(*u) for u in uops]
        blob = np.frombuffer(encode_uops(uops, self.cfg), np.uint8)
        return UopKernel(uops, self.put(MemType.UOP, blob))

    # --- instructions -----------------------------------------------------------------------
    def emit(self, insn):
        self.insns.append(insn)
        return insn

    def load(self, mem: MemType, sram: int, dram: int, y: int = 1, x: int = 1,
             stride: int | None = None, pad=(0, 0, 0, 0), **deps):
        """LOAD ``y`` rows of ``x`` elements (row pitch ``stride``) into buffer ``mem``.

        ``pad`` is ``(y_pad_0, y_pad_1, x_pad_0, x_pad_1)``.
        """
        d = _deps(deps)
        if deps:
            raise TypeError(f"unknown keyword argument(s): {', '.join(deps)}")
        return self.emit(MemInsn(opcode=Opcode.LOAD, memory_type=mem, sram_base=sram,
                                 dram_base=dram, y_size=y, x_size=x,
                                 x_stride=x if stride is None else stride,
                                 y_pad_0=pad[0], y_pad_1=pad[1], x_pad_0=pad[2], x_pad_1=pad[3],
                                 **d))

    def load_uops(self, kernel: UopKernel, sram: int = 0, **deps):
        """LOAD a micro-op kernel to ``sram``; returns ``(uop_bgn, uop_end)``."""
        self.load(MemType.UOP, sram, kernel.dram_elem, 1, len(kernel), **deps)
        return sram, sram + len(kernel)

    def store(self, sram: int, dram: int, y: int = 1, x: int = 1, stride: int | None = None,
              **deps):
        """STORE ``y`` rows of ``x`` OUT elements to DRAM."""
        d = _deps(deps)
        if deps:
            raise TypeError(f"unknown keyword argument(s): {', '.join(deps)}")
        return self.emit(MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, sram_base=sram,
                                 dram_base=dram, y_size=y, x_size=x,
                                 x_stride=x if stride is None else stride, **d))

    def sync(self, module: str, **deps):
        """A data-less instruction that only moves tokens, on the ``load``/``compute``/``store``
        module (x_size = 0)."""
        d = _deps(deps)
        if module == "load":
            insn = MemInsn(opcode=Opcode.LOAD, memory_type=MemType.INP, **d)
        elif module == "compute":
            insn = MemInsn(opcode=Opcode.LOAD, memory_type=MemType.UOP, **d)
        elif module == "store":
            insn = MemInsn(opcode=Opcode.STORE, memory_type=MemType.OUT, **d)
        else:
            raise ValueError(f"module must be 'load', 'compute' or 'store', not {module!r}")
        return self.emit(insn)

    def gemm(self, uops, iter_out: int = 1, iter_in: int = 1, dst=(0, 0), src=(0, 0),
             wgt=(0, 0), reset: bool = False, **deps):
        """GEMM over micro-ops ``uops = (bgn, end)``; factors are ``(out, in)`` pairs."""
        d = _deps(deps)
        return self.emit(GemmInsn(reset_reg=reset, uop_bgn=uops[0], uop_end=uops[1],
                                  iter_out=iter_out, iter_in=iter_in,
                                  dst_factor_out=dst[0], dst_factor_in=dst[1],
                                  src_factor_out=src[0], src_factor_in=src[1],
                                  wgt_factor_out=wgt[0], wgt_factor_in=wgt[1], **d))

    def alu(self, op: AluOp, uops, iter_out: int = 1, iter_in: int = 1, dst=(0, 0),
            src=(0, 0), imm: int | None = None, reset: bool = False, **deps):
        """ALU ``op`` with an immediate (``imm``) or the tensor ``acc[src]`` as operand."""
        d = _deps(deps)
        return self.emit(AluInsn(reset_reg=reset, uop_bgn=uops[0], uop_end=uops[1],
                                 iter_out=iter_out, iter_in=iter_in,
                                 dst_factor_out=dst[0], dst_factor_in=dst[1],
                                 src_factor_out=src[0], src_factor_in=src[1],
                                 alu_opcode=AluOp(op), use_imm=imm is not None,
                                 imm=0 if imm is None else imm, **d))

    def finish(self, **deps):
        return self.emit(FinishInsn(**_deps(deps)))

    def encode(self) -> bytes:
        """The instruction stream as bytes (16 bytes per instruction)."""
        return encode_program(self.insns, self.cfg)
