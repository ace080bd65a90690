"""``pyvta sim run``: the raw-program interface shared by every target."""

from __future__ import annotations

import time
from pathlib import Path

from ..hw.config import load_config
from .dram import Dram
from .fsim import FunctionalSimulator

__all__ = ["register", "run_raw"]

#: Targets of the raw-program interface. RTL simulation adds "rtl".
TARGETS = ("fsim", "rtl")


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{text!r} is not an integer address (use decimal or 0x...)") from None


def register(sub):
    p = sub.add_parser("sim", help="run raw instruction streams on a simulated accelerator")
    ssub = p.add_subparsers(dest="sim_command", metavar="ACTION")
    ssub.required = True
    run = ssub.add_parser("run", help="run INSN.bin against a DRAM image and write it back")
    run.add_argument("--insn", required=True, help="instruction stream: 16-byte LE words")
    run.add_argument("--dram", required=True, help="DRAM image loaded at --dram-base")
    run.add_argument("--dram-base", type=_int, default=0,
                     help="physical byte address of the image's first byte (default 0)")
    run.add_argument("--out", required=True, help="where to write the DRAM image after FINISH")
    run.add_argument("--target", choices=TARGETS, default="fsim")
    run.add_argument("--config", default=None, help="preset or JSON file (default: pynq-z1)")
    run.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator",
                     help="RTL simulator for --target rtl")
    run.set_defaults(func=_run)


def run_raw(insn: bytes, dram: bytes, *, dram_base: int = 0, target: str = "fsim",
            config=None, simulator: str = "verilator"):
    """Run a raw program on ``target``; returns ``(dram_bytes, summary_dict)``."""
    cfg = load_config(config)
    if target == "fsim":
        mem = Dram(base=dram_base, data=dram)
        counters = FunctionalSimulator(cfg, mem).run(insn)
        # The timing model's estimate of the RTL's cycles (DRAM latency: the RTL default). It
        # reads the micro-ops from the image as it was before the run (bank sets, two lanes).
        from .timing import estimate_cycles
        timing = estimate_cycles(cfg, insn, dram=(dram, dram_base))
        return mem.tobytes(), {"counters": counters, "cycles": timing.cycles,
                               "cycles_estimated": True, "timing": timing}
    if target == "rtl":
        from .rtl import run_rtl_raw  # imported lazily: needs cocotb and a simulator
        return run_rtl_raw(cfg, insn, dram, dram_base=dram_base, simulator=simulator)
    raise ValueError(f"unknown target {target!r}; targets are {', '.join(TARGETS)}")


def _run(args):
    insn = Path(args.insn).read_bytes()
    dram = Path(args.dram).read_bytes()
    t0 = time.perf_counter()
    image, info = run_raw(insn, dram, dram_base=args.dram_base, target=args.target,
                          config=args.config, simulator=args.simulator)
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(image)
    tmp.replace(out)  # never leave a half-written image behind
    counters = info["counters"]
    cycles = ""
    if "cycles" in info:
        est = " (estimated)" if info.get("cycles_estimated") else ""
        cycles = f"; {info['cycles']} cycles{est}"
    print(f"{args.target}: {counters.summary()}{cycles}; {elapsed:.3f} s")
