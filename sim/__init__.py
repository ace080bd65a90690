"""Simulation: the functional simulator (the executable ISA) and RTL simulation under cocotb."""

from .dram import Dram, DramError
from .fsim import (Counters, DeadlockError, FunctionalSimulator, SimError, alu_apply,
                   run_program)

__all__ = ["Dram", "DramError", "Counters", "DeadlockError", "FunctionalSimulator", "SimError",
           "alu_apply", "run_program"]
