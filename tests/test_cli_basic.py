"""The basic CLI: config show/list, disasm, sim run on the bundled example."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from pyvta.__main__ import main
from pyvta.compiler.builder import ProgramBuilder
from pyvta.hw.config import list_presets, load_config
from pyvta.hw.isa import AluOp, MemType, decode_program
from pyvta.sim.dram import Dram

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gemm"


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_config_list(capsys):
    code, out, _ = cli(capsys, "config", "list")
    assert code in (0, None)
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list_presets()
    assert any("1x16_i8w8a32_15_15_18_17 " in line and "51.2 GOPS" in line for line in lines)


def test_config_show(capsys):
    code, out, _ = cli(capsys, "config", "show")
    assert code == 0
    assert out.startswith("# pynq-z1: 1x16_i8w8a32_15_15_18_17")
    assert re.search(r"^inp_depth\s+2048$", out, re.M)
    assert re.search(r"^wgt_depth\s+1024$", out, re.M)
    code, out, _ = cli(capsys, "config", "show", "tiny", "--json")
    data = json.loads(out)
    assert data["derived"]["block_in"] == 8 and data["config"]["log_block"] == 3


def test_config_show_json_file_and_error(capsys, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"log_block": 9}))
    code, _, err = cli(capsys, "config", "show", str(path))
    assert code == 1 and "log_block must be in the range [1, 6], not 9" in err


def test_disasm_every_field(capsys, tmp_path):
    cfg = load_config()
    b = ProgramBuilder(cfg, Dram(1 << 16))
    b.load(MemType.INP, 3, 0x40, 2, 5, 7, pad=(1, 2, 3, 4), push_next_dep=True)
    b.gemm((1, 9), 6, 5, dst=(11, 12), src=(13, 14), wgt=(15, 16), reset=True,
           pop_prev_dep=True)
    b.alu(AluOp.SHR, (2, 3), 4, 8, dst=(21, 22), src=(23, 24), imm=-7, push_next_dep=True)
    b.alu(AluOp.MUL, (2, 3), 1, 1, dst=(1, 0), src=(1, 0))
    b.store(17, 0x99, 3, 2, 10, pop_prev_dep=True, push_prev_dep=True)
    b.sync("compute", pop_next_dep=True)
    b.finish()
    path = tmp_path / "p.bin"
    path.write_bytes(b.encode())
    code, out, _ = cli(capsys, "disasm", str(path))
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == len(b.insns) == len(decode_program(b.encode(), cfg))
    load, gemm, alu, mul, store, sync, finish = lines
    for text in ("LOAD", "INP", "sram=3", "dram=0x40", "y=2", "x=5", "stride=7",
                 "pad(y=1,2 x=3,4)", "pop=-", "push=next"):
        assert text in load, text
    for text in ("GEMM", "uop=[1,9)", "iter=6x5", "dst=(11,12)", "src=(13,14)", "wgt=(15,16)",
                 "reset=1", "pop=prev", "push=-"):
        assert text in gemm, text
    for text in ("ALU.SHR", "imm=-7", "uop=[2,3)", "iter=4x8", "dst=(21,22)", "src=(23,24)",
                 "reset=0", "push=next"):
        assert text in alu, text
    assert "ALU.MUL tensor" in mul
    for text in ("STORE", "OUT", "sram=17", "dram=0x99", "y=3", "x=2", "stride=10",
                 "pop=prev", "push=prev"):
        assert text in store, text
    assert "pop=next" in sync and finish.split()[2] == "FINISH"
    # Each line starts with the index and the raw word (most significant byte first).
    idx, word = load.split()[:2]
    assert idx == "0" and bytes.fromhex(word)[::-1] == b.encode()[:16]


def test_disasm_truncated(capsys, tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(20))
    code, _, err = cli(capsys, "disasm", str(path))
    assert code == 1 and "not a multiple of 16" in err


def test_sim_run_bundled_example(capsys, tmp_path):
    out = tmp_path / "out.bin"
    code, stdout, _ = cli(capsys, "sim", "run", "--insn", str(EXAMPLE / "insn.bin"),
                          "--dram", str(EXAMPLE / "dram.bin"), "--out", str(out))
    assert code == 0
    assert stdout.startswith("fsim: ") and "FINISH=1" in stdout
    image = out.read_bytes()
    assert len(image) == (EXAMPLE / "dram.bin").stat().st_size
    sys.path.insert(0, str(EXAMPLE))
    try:
        import make_example
    finally:
        sys.path.remove(str(EXAMPLE))
    prog, expected = make_example.build()
    # The bundled files are exactly what the generator produces.
    assert prog.encode() == (EXAMPLE / "insn.bin").read_bytes()
    assert prog.dram.tobytes() == (EXAMPLE / "dram.bin").read_bytes()
    np.testing.assert_array_equal(prog.read_output(image), expected)
    assert make_example.main(["--check", str(out)]) == 0
    assert "OK: all 3072 outputs" in capsys.readouterr().out


def test_entry_point_subprocess(tmp_path):
    exe = shutil.which("pyvta")
    cmd = [exe] if exe else [sys.executable, "-m", "pyvta"]
    proc = subprocess.run(cmd + ["config", "list"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "pynq-z1" in proc.stdout
    proc = subprocess.run(cmd + ["sim", "run", "--insn", str(EXAMPLE / "insn.bin"), "--dram",
                                 str(EXAMPLE / "dram.bin"), "--out", str(tmp_path / "o.bin"),
                                 "--config", "tiny"],
                          capture_output=True, text=True, timeout=120)
    # The example is built for pynq-z1: on tiny its indices do not fit, a clear error.
    assert proc.returncode == 1 and proc.stderr.startswith("pyvta: error: ")
    assert "Traceback" not in proc.stderr
