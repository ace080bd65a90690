"""phase_program: VTA's phase-timing variants keep the chosen instructions and the tokens."""

import numpy as np
import pytest

from pyvta.hw.config import load_config
from pyvta.hw.isa import MemInsn, Opcode, encode_program
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import PHASES, ProgramError, gemm_program, phase_program

DEPS = ("pop_prev_dep", "pop_next_dep", "push_prev_dep", "push_next_dep")


@pytest.fixture(scope="module")
def prog():
    cfg = load_config("tiny")
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (40, 48), dtype=np.int8)
    w = rng.integers(-128, 128, (24, 48), dtype=np.int8)
    return gemm_program(cfg, a, w, bias=rng.integers(-99, 99, 24).astype(np.int32), shift=4,
                        clip=(0, 127), threads=2)


def run(prog, insns):
    d = Dram(base=prog.dram.base, data=prog.dram.tobytes())
    counters = FunctionalSimulator(prog.cfg, d).run(encode_program(insns, prog.cfg))
    return counters, d


def test_all_phases_is_the_program(prog):
    assert phase_program(prog.insns, PHASES) == prog.insns


@pytest.mark.parametrize("keep", [("gemm",), ("alu",), ("inp",), ("wgt",), ("out",),
                                  ("inp", "wgt", "gemm", "out")])
def test_variant_keeps_kinds_tokens_and_runs(prog, keep):
    full, _ = run(prog, prog.insns)
    insns = phase_program(prog.insns, keep)
    assert len(insns) == len(prog.insns)
    for old, new in zip(prog.insns, insns):
        # Every instruction keeps its module's queue position and its dependency flags.
        assert [getattr(old, f) for f in DEPS] == [getattr(new, f) for f in DEPS]
        assert old.opcode == new.opcode or (new.opcode is Opcode.LOAD
                                            and old.opcode in (Opcode.GEMM, Opcode.ALU))
    counters, _ = run(prog, insns)  # token order still valid: fsim checks it
    assert counters.gemm_uops == (full.gemm_uops if "gemm" in keep else 0)
    assert counters.alu_uops == (full.alu_uops if "alu" in keep else 0)
    for mem, phase in (("INP", "inp"), ("WGT", "wgt"), ("OUT", "out")):
        assert counters.bytes.get(mem, 0) == (full.bytes[mem] if phase in keep else 0)
    kept_uop_load = any(isinstance(i, MemInsn) and i.memory_type.name == "UOP" and i.x_size
                        for i in insns)
    assert kept_uop_load == bool({"gemm", "alu"} & set(keep))


def test_bad_phase_is_named(prog):
    with pytest.raises(ProgramError, match="'gemms'"):
        phase_program(prog.insns, ["gemms"])
