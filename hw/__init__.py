"""Hardware: the configuration, the instruction set, and the accelerator in Amaranth HDL."""

from .config import HwConfig, ConfigError, load_config, list_presets
from .isa import (Opcode, MemType, AluOp, IsaError, MemInsn, GemmInsn, AluInsn, FinishInsn, Uop,
                  insn_layout, encode, decode, encode_program, decode_program, encode_uops,
                  decode_uops, format_insn)

__all__ = ["HwConfig", "ConfigError", "load_config", "list_presets", "Opcode", "MemType", "AluOp",
           "IsaError", "MemInsn", "GemmInsn", "AluInsn", "FinishInsn", "Uop", "insn_layout",
           "encode", "decode", "encode_program", "decode_program", "encode_uops", "decode_uops",
           "format_insn"]
