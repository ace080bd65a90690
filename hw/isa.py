"""The VTA instruction set, defined once.

Bit positions are computed from a :class:`~pyvta.hw.config.HwConfig` by :class:`InsnLayout`.
The same field table gives

* Amaranth ``data.FlexibleLayout`` views used by the RTL decoders,
* the plain-Python :func:`encode` / :func:`decode` used by the compiler, the functional
  simulator, the disassembler and the driver.

At the default configuration the words are bit-for-bit those of VTA (see ``docs/isa.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from amaranth.lib import data, enum

__all__ = [
    "Opcode", "MemType", "AluOp", "IsaError",
    "MemInsn", "GemmInsn", "AluInsn", "FinishInsn", "Insn", "Uop",
    "InsnLayout", "insn_layout", "encode", "decode", "encode_program", "decode_program",
    "encode_uops", "decode_uops", "format_insn", "INSN_BYTES", "LOOP_ITER_WIDTH",
]

#: Bytes per instruction word.
INSN_BYTES = 16
#: Width of the GEMM/ALU loop-extent fields (fixed in VTA, independent of the config).
LOOP_ITER_WIDTH = 14
#: Widths of the memory-instruction fields (fixed in VTA).
MEMOP_SRAM_WIDTH = 16
MEMOP_DRAM_WIDTH = 32
MEMOP_SIZE_WIDTH = 16
MEMOP_STRIDE_WIDTH = 16
MEMOP_PAD_WIDTH = 4
ALU_IMM_WIDTH = 16


class IsaError(ValueError):
    """An instruction or micro-op cannot be encoded or decoded."""


class Opcode(enum.Enum, shape=3):
    LOAD = 0
    STORE = 1
    GEMM = 2
    FINISH = 3
    ALU = 4


class MemType(enum.Enum, shape=3):
    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    OUT = 4


class AluOp(enum.Enum, shape=3):
    MIN = 0
    MAX = 1
    ADD = 2
    SHR = 3
    MUL = 4


# ------------------------------------------------------------------------------------------------
# Instruction objects (plain Python). Field names match the layout table below exactly.
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Deps:
    pop_prev_dep: bool = False
    pop_next_dep: bool = False
    push_prev_dep: bool = False
    push_next_dep: bool = False


@dataclass(frozen=True)
class MemInsn(_Deps):
    """LOAD or STORE: a 2-D strided copy between DRAM and an on-chip buffer."""
    opcode: Opcode = Opcode.LOAD
    memory_type: MemType = MemType.INP
    sram_base: int = 0
    dram_base: int = 0
    y_size: int = 0
    x_size: int = 0
    x_stride: int = 0
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0


@dataclass(frozen=True)
class _LoopInsn(_Deps):
    """The loop nest GEMM and ALU share: ``iter_out`` x ``iter_in`` x micro-ops."""
    reset_reg: bool = False
    uop_bgn: int = 0
    uop_end: int = 0
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0


@dataclass(frozen=True)
class GemmInsn(_LoopInsn):
    """GEMM: the two-level loop nest over micro-ops ``[uop_bgn, uop_end)``."""
    opcode: Opcode = Opcode.GEMM
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0


@dataclass(frozen=True)
class AluInsn(_LoopInsn):
    """ALU: ``acc[dst] = op(acc[dst], imm or acc[src])`` over the same loop nest as GEMM."""
    opcode: Opcode = Opcode.ALU
    alu_opcode: AluOp = AluOp.MIN
    use_imm: bool = False
    imm: int = 0


@dataclass(frozen=True)
class FinishInsn(_Deps):
    """FINISH: raise "done" to the host."""
    opcode: Opcode = Opcode.FINISH


Insn = MemInsn | GemmInsn | AluInsn | FinishInsn


@dataclass(frozen=True)
class Uop:
    """A micro-op: buffer indices the GEMM/ALU loop nest offsets by its factors."""
    dst_idx: int = 0
    src_idx: int = 0
    wgt_idx: int = 0


# ------------------------------------------------------------------------------------------------
# The layout table
# ------------------------------------------------------------------------------------------------

def _pack(fields, start=0, limit=None, what=""):
    """Place ``(name, width)`` pairs consecutively from bit ``start``; return name -> (off, w)."""
    out, pos = {}, start
    for name, width in fields:
        out[name] = (pos, width)
        pos += width
    if limit is not None and pos > limit:
        raise IsaError(f"{what} needs bits {start}..{pos - 1}, which do not fit below bit {limit}")
    return out


_HEADER = [("opcode", 3), ("pop_prev_dep", 1), ("pop_next_dep", 1),
           ("push_prev_dep", 1), ("push_next_dep", 1)]


class InsnLayout:
    """Bit positions of every instruction and micro-op field for one configuration.

    Each table maps a field name to ``(offset, width)``. Opcode-specific tables include the
    common header. Widths that depend on the configuration:

    * ``uop_bgn``: log2(uop depth); ``uop_end``: one more bit;
    * ``dst_*``: log2(acc depth); ``src_*``: log2 of the larger of inp and acc depths;
    * ``wgt_*``: log2(wgt depth).

    Raises :class:`~pyvta.hw.config.ConfigError` when a configuration's fields do not fit
    the 128-bit instruction word or the 32-bit micro-op.
    """

    def __init__(self, cfg):
        from .config import ConfigError
        self.cfg = cfg
        u = cfg.log_uop_depth
        a = cfg.log_acc_depth
        s = max(cfg.log_inp_depth, cfg.log_acc_depth)
        w = cfg.log_wgt_depth
        self.dst_width, self.src_width, self.wgt_width, self.uop_width = a, s, w, u
        try:
            header = _pack(_HEADER, 0, 64, "the header")
            self.mem = {**header, **_pack(
                [("memory_type", 3), ("sram_base", MEMOP_SRAM_WIDTH),
                 ("dram_base", MEMOP_DRAM_WIDTH)], 7, 64, "LOAD/STORE")}
            self.mem.update(_pack(
                [("y_size", MEMOP_SIZE_WIDTH), ("x_size", MEMOP_SIZE_WIDTH),
                 ("x_stride", MEMOP_STRIDE_WIDTH), ("y_pad_0", MEMOP_PAD_WIDTH),
                 ("y_pad_1", MEMOP_PAD_WIDTH), ("x_pad_0", MEMOP_PAD_WIDTH),
                 ("x_pad_1", MEMOP_PAD_WIDTH)], 64, 128, "LOAD/STORE"))
            loop = _pack([("reset_reg", 1), ("uop_bgn", u), ("uop_end", u + 1),
                          ("iter_out", LOOP_ITER_WIDTH), ("iter_in", LOOP_ITER_WIDTH)],
                         7, 64, "the GEMM/ALU loop fields")
            factors = [("dst_factor_out", a), ("dst_factor_in", a),
                       ("src_factor_out", s), ("src_factor_in", s)]
            self.gemm = {**header, **loop, **_pack(
                factors + [("wgt_factor_out", w), ("wgt_factor_in", w)], 64, 128,
                "the GEMM factor fields")}
            self.alu = {**header, **loop, **_pack(
                factors + [("alu_opcode", 3), ("use_imm", 1), ("imm", ALU_IMM_WIDTH)], 64, 128,
                "the ALU factor fields")}
            self.finish = dict(header)
            self.header = dict(header)
            self.uop = _pack([("dst_idx", a), ("src_idx", s), ("wgt_idx", w)], 0, 32,
                             "the micro-op")
        except IsaError as exc:
            raise ConfigError(
                f"configuration {cfg.fingerprint} does not fit VTA's instruction format: {exc}; "
                f"reduce the buffer sizes") from None

    def table(self, opcode: Opcode) -> dict:
        """The field table of an opcode."""
        return {Opcode.LOAD: self.mem, Opcode.STORE: self.mem, Opcode.GEMM: self.gemm,
                Opcode.ALU: self.alu, Opcode.FINISH: self.finish}[opcode]

    # Amaranth views of the same tables, for the RTL.
    def amaranth_layout(self, table: dict, size: int = 128) -> data.FlexibleLayout:
        """A ``FlexibleLayout`` of ``size`` bits with the fields of ``table``."""
        shapes = {"opcode": Opcode, "memory_type": MemType, "alu_opcode": AluOp}
        fields = {}
        for name, (off, width) in table.items():
            shape = shapes.get(name)
            if shape is None:
                shape = data.signed(width) if name == "imm" else data.unsigned(width)
            fields[name] = data.Field(shape, off)
        return data.FlexibleLayout(size, fields)

    @property
    def mem_layout(self):
        return self.amaranth_layout(self.mem)

    @property
    def gemm_layout(self):
        return self.amaranth_layout(self.gemm)

    @property
    def alu_layout(self):
        return self.amaranth_layout(self.alu)

    @property
    def header_layout(self):
        return self.amaranth_layout(self.header)

    @property
    def uop_layout(self):
        return self.amaranth_layout(self.uop, 32)


@lru_cache(maxsize=64)
def insn_layout(cfg) -> InsnLayout:
    """The (cached) :class:`InsnLayout` of a configuration."""
    return InsnLayout(cfg)


_CLASSES = {Opcode.LOAD: MemInsn, Opcode.STORE: MemInsn, Opcode.GEMM: GemmInsn,
            Opcode.ALU: AluInsn, Opcode.FINISH: FinishInsn}
_ENUMS = {"opcode": Opcode, "memory_type": MemType, "alu_opcode": AluOp}


def encode(insn: Insn, cfg) -> bytes:
    """Encode one instruction to its 16-byte little-endian word, checking every field's range."""
    table = insn_layout(cfg).table(insn.opcode)
    word = 0
    for name, (off, width) in table.items():
        value = getattr(insn, name)
        if isinstance(value, enum.Enum):
            value = value.value
        value = int(value)
        if name == "imm":
            lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
            if not lo <= value <= hi:
                raise IsaError(f"{insn.opcode.name}.{name} must be in [{lo}, {hi}], not {value}")
            value &= (1 << width) - 1
        elif not 0 <= value < (1 << width):
            raise IsaError(
                f"{insn.opcode.name}.{name} must be in [0, {(1 << width) - 1}] "
                f"({width} bits at this configuration), not {value}")
        word |= value << off
    return word.to_bytes(INSN_BYTES, "little")


def decode(word: bytes, cfg, index: int | None = None) -> Insn:
    """Decode one 16-byte word; unknown opcodes or memory types raise :class:`IsaError`."""
    where = f"instruction {index}: " if index is not None else ""
    if len(word) != INSN_BYTES:
        raise IsaError(f"{where}an instruction word is {INSN_BYTES} bytes, not {len(word)}")
    value = int.from_bytes(word, "little")
    raw_op = value & 0x7
    try:
        opcode = Opcode(raw_op)
    except ValueError:
        raise IsaError(f"{where}unknown opcode {raw_op} (known: "
                       + ", ".join(f"{o.name}={o.value}" for o in Opcode) + ")") from None
    table = insn_layout(cfg).table(opcode)
    kwargs = {}
    for name, (off, width) in table.items():
        field = (value >> off) & ((1 << width) - 1)
        if name == "imm" and field >> (width - 1):
            field -= 1 << width
        if name in _ENUMS:
            try:
                field = _ENUMS[name](field)
            except ValueError:
                known = ", ".join(f"{e.name}={e.value}" for e in _ENUMS[name])
                raise IsaError(f"{where}unknown {name} {field} (known: {known})") from None
        elif width == 1 and name not in ("imm",):
            field = bool(field)
        kwargs[name] = field
    return _CLASSES[opcode](**kwargs)


def encode_program(insns, cfg) -> bytes:
    """Encode a sequence of instructions to a contiguous byte string."""
    return b"".join(encode(i, cfg) for i in insns)


def decode_program(blob: bytes, cfg) -> list:
    """Decode a byte string of instruction words; a truncated word is an error."""
    if len(blob) % INSN_BYTES:
        raise IsaError(
            f"instruction stream is {len(blob)} bytes, not a multiple of {INSN_BYTES}: "
            f"the last {len(blob) % INSN_BYTES} bytes are a truncated instruction")
    return [decode(blob[i:i + INSN_BYTES], cfg, i // INSN_BYTES)
            for i in range(0, len(blob), INSN_BYTES)]


def encode_uops(uops, cfg) -> bytes:
    """Encode micro-ops to 4-byte little-endian words, checking index ranges."""
    table = insn_layout(cfg).uop
    out = bytearray()
    for k, uop in enumerate(uops):
        word = 0
        for name, (off, width) in table.items():
            value = int(getattr(uop, name))
            if not 0 <= value < (1 << width):
                raise IsaError(f"micro-op {k}: {name} must be in [0, {(1 << width) - 1}], "
                               f"not {value}")
            word |= value << off
        out += word.to_bytes(4, "little")
    return bytes(out)


def decode_uops(blob: bytes, cfg) -> list:
    """Decode 4-byte micro-op words."""
    if len(blob) % 4:
        raise IsaError(f"micro-op data is {len(blob)} bytes, not a multiple of 4")
    table = insn_layout(cfg).uop
    out = []
    for i in range(0, len(blob), 4):
        word = int.from_bytes(blob[i:i + 4], "little")
        out.append(Uop(**{n: (word >> off) & ((1 << w) - 1) for n, (off, w) in table.items()}))
    return out


def format_insn(insn: Insn) -> str:
    """A one-line, human-readable rendering with every field.

    Dependency flags print as ``pop=<which> push=<which>`` (``prev``, ``next``, both or ``-``).
    """
    def flags(prev, nxt):
        names = [n for n, on in (("prev", prev), ("next", nxt)) if on]
        return ",".join(names) or "-"
    deps = (f" pop={flags(insn.pop_prev_dep, insn.pop_next_dep)}"
            f" push={flags(insn.push_prev_dep, insn.push_next_dep)}")
    op = insn.opcode
    if op in (Opcode.LOAD, Opcode.STORE):
        pad = f" pad(y={insn.y_pad_0},{insn.y_pad_1} x={insn.x_pad_0},{insn.x_pad_1})"
        return (f"{op.name:<6} {insn.memory_type.name:<3} sram={insn.sram_base} "
                f"dram={insn.dram_base:#x} y={insn.y_size} x={insn.x_size} "
                f"stride={insn.x_stride}{pad}{deps}")
    if op in (Opcode.GEMM, Opcode.ALU):
        head = op.name if op is Opcode.GEMM else f"ALU.{insn.alu_opcode.name}"
        if op is Opcode.ALU:
            head += f" imm={insn.imm}" if insn.use_imm else " tensor"
        text = (f"{head:<6} uop=[{insn.uop_bgn},{insn.uop_end}) "
                f"iter={insn.iter_out}x{insn.iter_in} "
                f"dst=({insn.dst_factor_out},{insn.dst_factor_in}) "
                f"src=({insn.src_factor_out},{insn.src_factor_in})")
        if op is Opcode.GEMM:
            text += f" wgt=({insn.wgt_factor_out},{insn.wgt_factor_in})"
        text += f" reset={int(insn.reset_reg)}"
        return text + deps
    return f"FINISH{deps}"
