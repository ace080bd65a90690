r"""Verilog generation for one configuration (``pyvta hw verilog``).

The Verilog is written by ``amaranth.back.verilog`` (no system tools needed); the top module
is always named :data:`TOP_NAME` and the file is named after the configuration fingerprint.
A JSON file next to it carries the configuration, its derived sizes and the register map.

Time-zero evaluation of combinational processes
-----------------------------------------------
Yosys writes Amaranth's combinational processes as ``always @*`` blocks, which an event-driven
simulator only runs when one of their inputs changes. To run each one once at time zero it
declares a dummy trigger ``reg \$auto$verilog_backend.cc:N:dump_module$M = 0;`` read by every
such block. That only works under Verilog-2005 rules, where the declaration initialiser is an
ordinary time-zero assignment (an event). Under SystemVerilog rules (IEEE 1800 6.8:
initialisers take effect before any ``initial`` or ``always`` procedure starts, so no block
sees a change), which is how cocotb compiles for Icarus (``iverilog -g2012``) and how many
simulators read ``.sv`` files, no block is triggered: every combinational output whose inputs
stay constant after reset (e.g. a module's FSM outputs while its command queue is still empty,
or a FIFO ``r_en`` computed from a READY/VALID pair that stays low) holds X until an input
first changes. Under Icarus this made the core's counters and ERROR read X (they add X status
bits) and hung the first STORE after reset: the AXI master's B-channel flag FIFO saw an X read
enable while a write-burst flag was pushed, lost that entry, and never signalled the write
completion. The hardware itself is unaffected (two-state simulators and synthesis evaluate
combinational logic unconditionally), so :func:`fix_comb_init` rewrites the trigger into a
non-blocking assignment in an ``initial`` block: it lands after every process has started and
waits on its inputs, and changes the trigger from X to 0, so each ``always @*`` block runs once
at time zero under either set of rules. Synthesis ignores the trigger as before (it drives no
logic).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .config import HwConfig, load_config
from .regmap import register_map

__all__ = ["TOP_NAME", "generate_verilog", "write_verilog", "fix_comb_init"]

#: Name of the generated top-level Verilog module.
TOP_NAME = "pyvta_top"

_cache: dict = {}

# Yosys's time-zero trigger for ``always @*`` blocks (an escaped identifier ends at whitespace).
_TRIGGER = re.compile(r"^(?P<indent>[ \t]*)reg (?P<name>\\\S*dump_module\S* ) = 0;$", re.M)


def fix_comb_init(verilog_text: str) -> str:
    """Make Yosys's ``always @*`` time-zero trigger work under SystemVerilog rules too.

    Replaces each ``reg <trigger> = 0;`` declaration by ``reg <trigger>;`` plus
    ``initial <trigger> <= 1'b0;`` (see the module docstring for why). Text without such a
    declaration is returned unchanged.
    """
    return _TRIGGER.sub(lambda m: (f"{m['indent']}reg {m['name']};\n"
                                   f"{m['indent']}initial {m['name']}<= 1'b0;"), verilog_text)


def generate_verilog(cfg: HwConfig | str | None = None) -> str:
    """The Verilog text of :class:`~pyvta.hw.top.Accelerator` for ``cfg`` (memoized)."""
    cfg = load_config(cfg)
    key = (cfg.fingerprint, tuple(sorted(cfg.to_dict().items())))
    if key not in _cache:
        from amaranth.back import verilog
        from .top import Accelerator
        text = verilog.convert(Accelerator(cfg), name=TOP_NAME, emit_src=False)
        _cache[key] = fix_comb_init(text)
    return _cache[key]


def metadata(cfg: HwConfig, verilog_text: str) -> dict:
    """The JSON document written next to the Verilog."""
    return {
        "top": TOP_NAME,
        "fingerprint": cfg.fingerprint,
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "config": cfg.to_dict(),
        "derived": cfg.derived(),
        "register_map": register_map(cfg).to_dict(),
    }


def write_verilog(cfg: HwConfig | str | None, out_dir) -> tuple[Path, Path]:
    """Write ``<fingerprint>.v`` and ``<fingerprint>.json`` into ``out_dir``; return both paths."""
    cfg = load_config(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = generate_verilog(cfg)
    v_path = out_dir / f"{cfg.fingerprint}.v"
    j_path = out_dir / f"{cfg.fingerprint}.json"
    v_path.write_text(text)
    j_path.write_text(json.dumps(metadata(cfg, text), indent=2))
    return v_path, j_path
