"""The AXI4-Lite register map of the accelerator, defined once.

The AXI4-Lite slave (``hw/axilite.py``), the RTL simulator (``sim/rtl.py``), the documentation
and the board driver all read the table built here; ``pyvta hw verilog`` exports it as JSON next
to the Verilog. Registers are 32 bits wide at word-aligned byte offsets.

Access kinds:

* ``rw``  read/write;
* ``ro``  read-only (writes are ignored);
* ``wo``  write-only strobe (reads return 0);
* ``w1c`` read, and write 1 to clear a bit.

The identification registers let a driver refuse a bitstream built for another configuration:
``ID_HASH`` is the CRC-32 of :attr:`HwConfig.fingerprint`, ``ID_GEOMETRY`` and ``ID_BUFFERS``
pack the key log2 parameters.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

from .config import HwConfig, load_config

__all__ = ["Register", "Field", "RegisterMap", "register_map", "MAGIC", "REG_BYTES",
           "counter_registers"]

#: Bytes per register.
REG_BYTES = 4
#: Value of the ``MAGIC`` register: ASCII "PVTA", little-endian.
MAGIC = int.from_bytes(b"PVTA", "little")
#: Register-map layout version; bump on any incompatible change.
REGMAP_VERSION = 1

#: Registers mirroring the core's performance counters (``hw/core.py: COUNTERS``), from 0x40.
#: ``cycles`` is mapped as CYCLES at 0x18 instead.
def _counter_names():
    from .core import COUNTERS  # the core defines which counters exist
    return [c for c in COUNTERS if c != "cycles"]


@dataclass(frozen=True)
class Field:
    """A named bit range inside a register."""
    name: str
    lsb: int
    width: int
    doc: str

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    """One 32-bit register: byte ``offset``, ``access`` kind, ``reset`` value, fields."""
    name: str
    offset: int
    access: str
    reset: int
    doc: str
    fields: tuple = field(default=())

    def to_dict(self) -> dict:
        return {"name": self.name, "offset": self.offset, "access": self.access,
                "reset": self.reset, "doc": self.doc,
                "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width, "doc": f.doc}
                           for f in self.fields]}


class RegisterMap:
    """The registers of one configuration, looked up by name or offset."""

    def __init__(self, cfg: HwConfig, registers):
        self.cfg = cfg
        self.registers = tuple(registers)
        self._by_name = {r.name: r for r in self.registers}
        self._by_offset = {r.offset: r for r in self.registers}
        if len(self._by_name) != len(self.registers) or \
                len(self._by_offset) != len(self.registers):
            raise AssertionError("register names and offsets must be unique")

    def __iter__(self):
        return iter(self.registers)

    def __len__(self):
        return len(self.registers)

    def __getitem__(self, name: str) -> Register:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no register named {name!r}; registers are "
                           f"{', '.join(self._by_name)}") from None

    def offset(self, name: str) -> int:
        """Byte offset of register ``name``."""
        return self[name].offset

    def at(self, offset: int) -> Register | None:
        """The register at byte ``offset`` (``None`` if unmapped)."""
        return self._by_offset.get(offset)

    @property
    def span(self) -> int:
        """Bytes of address space the map occupies (a power of two)."""
        end = max(r.offset for r in self.registers) + REG_BYTES
        return 1 << (end - 1).bit_length()

    @property
    def addr_width(self) -> int:
        """Width of the AXI4-Lite address bus needed to reach every register."""
        return (self.span - 1).bit_length()

    def to_dict(self) -> dict:
        return {"version": REGMAP_VERSION, "fingerprint": self.cfg.fingerprint,
                "register_bytes": REG_BYTES, "span": self.span,
                "registers": [r.to_dict() for r in self.registers]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _core_error_fields():
    from .core_errors import CoreError  # the core defines its error bits
    for flag in CoreError:
        bit = int(flag).bit_length() - 1
        yield Field(flag.name, bit, 1, f"core error {flag.name} (see hw/core_errors.py)")


def counter_registers():
    """``(core counter name, byte offset)`` of every counter register, from 0x40."""
    return [(name, 0x40 + REG_BYTES * i) for i, name in enumerate(_counter_names())]


def fingerprint_hash(cfg: HwConfig) -> int:
    """CRC-32 of the configuration's fingerprint string (the ``ID_HASH`` register)."""
    return zlib.crc32(cfg.fingerprint.encode("ascii")) & 0xFFFF_FFFF


def _geometry(cfg: HwConfig) -> int:
    # 4 bits each: log_batch, log_block, log_inp_width, log_wgt_width, log_acc_width,
    # log2(axi_data_width / 8).
    vals = [cfg.log_batch, cfg.log_block, cfg.log_inp_width, cfg.log_wgt_width,
            cfg.log_acc_width, cfg.axi_bytes.bit_length() - 1]
    return sum(v << (4 * i) for i, v in enumerate(vals))


def _buffers(cfg: HwConfig) -> int:
    # 8 bits each: log2 byte sizes of the UOP, INP, WGT and ACC buffers.
    vals = [cfg.log_uop_buff_size, cfg.log_inp_buff_size, cfg.log_wgt_buff_size,
            cfg.log_acc_buff_size]
    return sum(v << (8 * i) for i, v in enumerate(vals))


def _queues(cfg: HwConfig) -> int:
    return (cfg.cmd_queue_depth & 0xFFFF) | ((cfg.dep_queue_depth & 0xFFFF) << 16)


def register_map(cfg=None) -> RegisterMap:
    """Build the register map of configuration ``cfg`` (a preset name, path or HwConfig)."""
    cfg = load_config(cfg)
    regs = [
        Register("CONTROL", 0x00, "wo", 0,
                 "Write 1 to START to run INSN_COUNT instructions from INSN_ADDR. Ignored "
                 "while BUSY.",
                 (Field("START", 0, 1, "start the accelerator (self-clearing)"),)),
        Register("STATUS", 0x04, "ro", 0, "Run state.",
                 (Field("DONE", 0, 1, "the last run reached FINISH; cleared by START"),
                  Field("BUSY", 1, 1, "a run is in progress"))),
        Register("IRQ_ENABLE", 0x08, "rw", 0, "Interrupt enables.",
                 (Field("DONE", 0, 1, "raise `interrupt` when a run finishes"),)),
        Register("IRQ_STATUS", 0x0C, "w1c", 0,
                 "Interrupt status (set on events whether enabled or not); write 1 to clear.",
                 (Field("DONE", 0, 1, "a run finished"),)),
        Register("INSN_ADDR", 0x10, "rw", 0,
                 "Physical byte address of the first instruction (16-byte aligned)."),
        Register("INSN_COUNT", 0x14, "rw", 0, "Number of 16-byte instructions to fetch."),
        Register("CYCLES", 0x18, "ro", 0, "Clock cycles from START to FINISH of the last run "
                 "(counts while BUSY)."),
        Register("ERROR", 0x1C, "ro", 0, "Error flags of the last run (cleared by START). "
                 "Bits 0-7 are the core's CoreError flags (hw/core_errors.py).",
                 tuple(_core_error_fields()) + (
                     Field("AXI_READ", 8, 1, "an AXI read returned SLVERR or DECERR"),
                     Field("AXI_WRITE", 9, 1, "an AXI write response was SLVERR or DECERR"),
                     Field("START_UNALIGNED", 10, 1, "START with INSN_ADDR not 16-byte "
                           "aligned: the register file refused to start"))),
        Register("MAGIC", 0x20, "ro", MAGIC, "Constant 'PVTA' (0x41545650): identifies the core."),
        Register("VERSION", 0x24, "ro", REGMAP_VERSION, "Register-map layout version."),
        Register("ID_HASH", 0x28, "ro", fingerprint_hash(cfg),
                 f"CRC-32 of the configuration fingerprint ({cfg.fingerprint!r})."),
        Register("ID_GEOMETRY", 0x2C, "ro", _geometry(cfg),
                 "4-bit fields: log_batch, log_block, log_inp_width, log_wgt_width, "
                 "log_acc_width, log2(AXI bytes).",
                 (Field("LOG_BATCH", 0, 4, "log2 BATCH"), Field("LOG_BLOCK", 4, 4, "log2 BLOCK"),
                  Field("LOG_INP_WIDTH", 8, 4, ""), Field("LOG_WGT_WIDTH", 12, 4, ""),
                  Field("LOG_ACC_WIDTH", 16, 4, ""), Field("LOG_AXI_BYTES", 20, 4, ""))),
        Register("ID_BUFFERS", 0x30, "ro", _buffers(cfg),
                 "8-bit fields: log2 byte sizes of the UOP, INP, WGT and ACC buffers.",
                 (Field("LOG_UOP", 0, 8, ""), Field("LOG_INP", 8, 8, ""),
                  Field("LOG_WGT", 16, 8, ""), Field("LOG_ACC", 24, 8, ""))),
        Register("ID_QUEUES", 0x34, "ro", _queues(cfg),
                 "Command-queue depth (bits 0-15) and dependency-queue depth (bits 16-31).",
                 (Field("CMD_DEPTH", 0, 16, ""), Field("DEP_DEPTH", 16, 16, ""))),
    ]
    for name, offset in counter_registers():
        regs.append(Register(name.upper(), offset, "ro", 0,
                             f"Performance counter {name!r} of the last run (see hw/core.py)."))
    return RegisterMap(cfg, regs)
