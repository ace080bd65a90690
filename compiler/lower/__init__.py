"""Lowering of quantized operators to VTA programs: tensorization, tiling, virtual threads.

``lower(cfg, ops, inputs, outputs, shapes)`` turns one partition (a list of :class:`AccelOp`)
into an :class:`AccelProgram` (see ``docs/scheduling.md``).
"""

from .emit import LoweringError
from .lower import as_conv, lower, op_macs, run_fsim, supports
from .program import AccelOp, AccelProgram, TensorPlacement

__all__ = ["AccelOp", "AccelProgram", "TensorPlacement", "LoweringError", "lower", "run_fsim",
           "as_conv", "op_macs", "supports"]
