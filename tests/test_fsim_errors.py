"""Bad programs give one clear error, through the Python API and through ``pyvta sim run``."""

import dataclasses
import subprocess
import sys

import pytest

from pyvta.__main__ import main
from pyvta.compiler.builder import ProgramBuilder
from pyvta.hw.config import load_config
from pyvta.hw.isa import AluOp, IsaError, MemType
from pyvta.sim.dram import Dram
from pyvta.sim.fsim import DeadlockError, FunctionalSimulator, SimError

CFG = load_config("pynq-z1")


def builder():
    return ProgramBuilder(CFG, Dram(1 << 16))


def ok_tail(b):
    """Order everything before FINISH: a compute->store->compute round trip."""
    b.sync("compute", push_next_dep=True)
    b.sync("store", pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()


def run(b_or_bytes, dram=None):
    if isinstance(b_or_bytes, ProgramBuilder):
        return FunctionalSimulator(CFG, b_or_bytes.dram).run(b_or_bytes.encode())
    return FunctionalSimulator(CFG, dram or Dram(1 << 16)).run(b_or_bytes)


# --- the cases: name -> (program bytes, expected exception, message regex) -------------------------

def case_truncated():
    b = builder()
    ok_tail(b)
    return b.encode()[:-3], IsaError, r"not a multiple of 16: the last 13 bytes"


def case_unknown_opcode():
    b = builder()
    ok_tail(b)
    blob = bytearray(b.encode())
    blob[16] = (blob[16] & ~7) | 6  # instruction 1
    return bytes(blob), IsaError, r"instruction 1: unknown opcode 6"


def case_unknown_memtype():
    b = builder()
    b.load(MemType.INP, 0, 0, 1, 1)
    ok_tail(b)
    blob = bytearray(b.encode())
    word = int.from_bytes(blob[:16], "little") | (7 << 7)
    blob[:16] = word.to_bytes(16, "little")
    return bytes(blob), IsaError, r"instruction 0: unknown memory_type 7"


def case_store_padding():
    b = builder()
    b.sync("compute", push_next_dep=True)
    b.emit(dataclasses.replace(
        b.store(0, 0, 1, 1, pop_prev_dep=True, push_prev_dep=True), y_pad_0=1))
    b.insns.pop(-2)  # keep only the padded copy
    b.sync("compute", pop_next_dep=True)
    b.finish()
    return b.encode(), SimError, r"instruction 1 \(STORE.*\): a STORE cannot have padding"


def case_uop_outside():
    b = builder()
    b.gemm((0, CFG.uop_depth + 1))
    ok_tail(b)
    return b.encode(), SimError, (rf"instruction 0 \(GEMM.*micro-op range \[0, "
                                  rf"{CFG.uop_depth + 1}\) is not inside")


def case_index_outside():
    b = builder()
    b.alu(AluOp.ADD, (0, 1),
          iter_out=3, dst=(1024, 0), imm=1)
    ok_tail(b)
    return b.encode(), SimError, (r"instruction 0 \(ALU.*micro-op 0 at iteration \(i=2, j=0\) "
                                  r"addresses destination ACC element 2048, outside the buffer "
                                  r"\(2048 elements\)")


def case_dram_outside():
    b = builder()
    b.load(MemType.INP, 0, (1 << 16) // CFG.inp_elem_bytes - 1, 1, 2, push_next_dep=True)
    b.sync("compute", pop_prev_dep=True)
    ok_tail(b)
    return b.encode(), SimError, r"instruction 0 \(LOAD.*outside the DRAM image \[0x0, 0x10000\)"


def case_pop_without_push():
    b = builder()
    b.load(MemType.INP, 0, 0, 1, 1)
    b.sync("compute", pop_prev_dep=True)   # nothing pushes load->compute
    ok_tail(b)
    return b.encode(), DeadlockError, (r"deadlocks.*compute module is stuck at instruction 1 .*"
                                       r"waiting for a load->compute token")


def case_missing_finish():
    b = builder()
    b.load(MemType.INP, 0, 0, 1, 1)
    return b.encode(), SimError, r"ended without FINISH \(last instruction 0"


def case_after_finish():
    b = builder()
    ok_tail(b)
    b.sync("compute")
    return b.encode(), SimError, r"instruction 3 is FINISH but instruction 4 follows it"


def case_finish_before_store():
    b = builder()
    b.sync("compute", push_next_dep=True)
    b.store(0, 0, 1, 1, pop_prev_dep=True)  # no store->compute token back
    b.finish()
    return b.encode(), SimError, r"FINISH \(instruction 2\) can run before .*store module"


CASES = {f.__name__[5:]: f for f in (
    case_truncated, case_unknown_opcode, case_unknown_memtype, case_store_padding,
    case_uop_outside, case_index_outside, case_dram_outside, case_pop_without_push,
    case_missing_finish, case_after_finish, case_finish_before_store)}


@pytest.mark.parametrize("name", sorted(CASES))
def test_api_errors(name):
    blob, exc, pattern = CASES[name]()
    with pytest.raises(exc, match=pattern):
        run(blob)


def test_finish_not_ordered_after_store_by_tokens():
    """The store happens to run before FINISH in fsim's schedule, but nothing orders it."""
    b = builder()
    b.load(MemType.INP, 0, 0, 1, 1, push_next_dep=True)
    b.sync("compute", push_next_dep=True)
    b.store(0, 0, 1, 1, pop_prev_dep=True)          # result stored, no token back
    b.sync("compute", pop_prev_dep=True)            # waits only for the load
    b.finish()
    with pytest.raises(SimError, match=r"FINISH \(instruction 4\) is not ordered after "
                                       r"instruction 2 \(STORE"):
        run(b)


def test_finish_not_ordered_after_load():
    b = builder()
    b.load(MemType.INP, 0, 0, 1, 1)                 # nobody waits for it
    ok_tail(b)
    with pytest.raises(SimError, match=r"not ordered after instruction 0 \(LOAD"):
        run(b)


def test_empty_program():
    with pytest.raises(SimError, match="empty"):
        run(b"")


def test_legal_tail_runs():
    b = builder()
    ok_tail(b)
    counters = run(b)
    assert counters.insns["FINISH"] == 1


# --- through the CLI -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["truncated", "unknown_opcode", "store_padding", "dram_outside",
                                  "pop_without_push", "finish_before_store"])
def test_cli_errors(name, tmp_path, capsys):
    blob, _, _ = CASES[name]()
    insn, dram, out = tmp_path / "insn.bin", tmp_path / "dram.bin", tmp_path / "out.bin"
    insn.write_bytes(blob)
    dram.write_bytes(bytes(1 << 16))
    code = main(["sim", "run", "--insn", str(insn), "--dram", str(dram), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("pyvta: error: ")
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert not out.exists() and not (tmp_path / "out.bin.tmp").exists()


def test_cli_error_subprocess(tmp_path):
    """The real entry point: exit status 1, one line on stderr, no traceback, no output file."""
    blob, _, _ = case_missing_finish()
    insn, dram, out = tmp_path / "insn.bin", tmp_path / "dram.bin", tmp_path / "out.bin"
    insn.write_bytes(blob)
    dram.write_bytes(bytes(1 << 16))
    proc = subprocess.run([sys.executable, "-m", "pyvta", "sim", "run", "--insn", str(insn),
                           "--dram", str(dram), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyvta: error: ") and "FINISH" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_missing_file(tmp_path, capsys):
    code = main(["sim", "run", "--insn", str(tmp_path / "nope.bin"), "--dram",
                 str(tmp_path / "nope2.bin"), "--out", str(tmp_path / "o.bin")])
    assert code == 1
    assert "nope.bin" in capsys.readouterr().err
