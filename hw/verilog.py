"""Verilog generation for one configuration (``pyvta hw verilog``).

The Verilog is written by ``amaranth.back.verilog`` (no system tools needed); the top module
is always named :data:`TOP_NAME` and the file is named after the configuration fingerprint.
A JSON file next to it carries the configuration, its derived sizes and the register map.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import HwConfig, load_config
from .regmap import register_map

__all__ = ["TOP_NAME", "generate_verilog", "write_verilog"]

#: Name of the generated top-level Verilog module.
TOP_NAME = "pyvta_top"

_cache: dict = {}


def generate_verilog(cfg: HwConfig | str | None = None) -> str:
    """The Verilog text of :class:`~pyvta.hw.top.Accelerator` for ``cfg`` (memoized)."""
    cfg = load_config(cfg)
    key = (cfg.fingerprint, tuple(sorted(cfg.to_dict().items())))
    if key not in _cache:
        from amaranth.back import verilog
        from .top import Accelerator
        _cache[key] = verilog.convert(Accelerator(cfg), name=TOP_NAME, emit_src=False)
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
