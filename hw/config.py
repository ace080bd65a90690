"""The hardware configuration: the one source of truth for every size in pyvta.

Every part of the stack (RTL, simulators, compiler, runtime, driver) derives its widths and
depths from a :class:`HwConfig`. Nothing else re-types a size.

The configuration stores VTA's base-2 logarithms; every derived size is a property computed
here and nowhere else.  Presets live as small JSON files in ``hw/presets/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["HwConfig", "ConfigError", "PRESETS_DIR", "list_presets", "load_config"]

PRESETS_DIR = Path(__file__).resolve().parent / "presets"

#: The FPGA resources of the parts the presets target (LUT, FF, BRAM36, DSP).
FPGA_PARTS = {
    "xc7z020clg400-1": {"family": "xc7", "lut": 53200, "ff": 106400, "bram36": 140, "dsp": 220},
    "xczu3eg-sbva484-1-e": {"family": "xcup", "lut": 70560, "ff": 141120, "bram36": 216, "dsp": 360},
    "xczu7ev-ffvc1156-2-e": {"family": "xcup", "lut": 230400, "ff": 460800, "bram36": 312, "dsp": 1728},
}


class ConfigError(ValueError):
    """A hardware configuration value is invalid or inconsistent."""


def _check_range(name: str, value, lo: int, hi: int):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be in the range [{lo}, {hi}], not {value!r}")


@dataclass(frozen=True)
class HwConfig:
    """An accelerator configuration (VTA's ``vta_config.json`` plus board settings).

    Sizes are stored as base-2 logarithms exactly as VTA does; use the derived properties
    (``block_in``, ``inp_depth``, ``acc_elem_bytes``, ...) rather than recomputing them.
    """

    #: log2 of the input element width in bits (3: int8). Only int8 inputs are supported.
    log_inp_width: int = 3
    #: log2 of the weight element width in bits (3: int8). Only int8 weights are supported.
    log_wgt_width: int = 3
    #: log2 of the accumulator width in bits (5: int32). Only int32 accumulators are supported.
    log_acc_width: int = 5
    #: log2 of BATCH, the number of input rows the GEMM core processes per cycle.
    log_batch: int = 0
    #: log2 of BLOCK_IN = BLOCK_OUT, the GEMM core's reduction and output width.
    log_block: int = 4
    #: log2 of the micro-op buffer size in bytes (micro-ops are 4 bytes).
    log_uop_buff_size: int = 15
    #: log2 of the input buffer size in bytes.
    log_inp_buff_size: int = 15
    #: log2 of the weight buffer size in bytes.
    log_wgt_buff_size: int = 18
    #: log2 of the accumulator buffer size in bytes.
    log_acc_buff_size: int = 17
    #: Width of the AXI4 data bus to DRAM in bits (64 on Zynq-7000 HP/ACP, 128 on ZynqMP).
    axi_data_width: int = 64
    #: Target clock frequency in MHz.
    clock_mhz: float = 100.0
    #: Depth of the load/compute/store command queues fed by the fetch module.
    cmd_queue_depth: int = 64
    #: Depth of each of the four dependency-token queues (VTA used 8).
    dep_queue_depth: int = 8
    #: Board name (informational; selects the driver's defaults).
    board: str = "pynq-z1"
    #: FPGA part number used by the resource estimate and the board flow.
    fpga_part: str = "xc7z020clg400-1"
    #: Name of the preset this configuration came from ("custom" otherwise).
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        _check_range("log_inp_width", self.log_inp_width, 3, 3)
        _check_range("log_wgt_width", self.log_wgt_width, 3, 3)
        _check_range("log_acc_width", self.log_acc_width, 5, 5)
        _check_range("log_batch", self.log_batch, 0, 4)
        _check_range("log_block", self.log_block, 1, 6)
        _check_range("log_uop_buff_size", self.log_uop_buff_size, 4, 20)
        _check_range("log_inp_buff_size", self.log_inp_buff_size, 4, 22)
        _check_range("log_wgt_buff_size", self.log_wgt_buff_size, 4, 22)
        _check_range("log_acc_buff_size", self.log_acc_buff_size, 4, 22)
        _check_range("cmd_queue_depth", self.cmd_queue_depth, 2, 4096)
        _check_range("dep_queue_depth", self.dep_queue_depth, 1, 4096)
        if self.axi_data_width not in (32, 64, 128, 256):
            raise ConfigError(
                f"axi_data_width must be one of 32, 64, 128, 256, not {self.axi_data_width!r}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) \
                or not 1 <= self.clock_mhz <= 1000:
            raise ConfigError(f"clock_mhz must be a number in [1, 1000], not {self.clock_mhz!r}")
        if self.fpga_part not in FPGA_PARTS:
            raise ConfigError(
                f"fpga_part must be one of {', '.join(sorted(FPGA_PARTS))}, not {self.fpga_part!r}")
        # Each buffer must hold at least one element, and its index must fit the ISA fields.
        for buf in ("uop", "inp", "wgt", "acc"):
            elem = getattr(self, f"{buf}_elem_bytes")
            log_size = getattr(self, f"log_{buf}_buff_size")
            if (1 << log_size) < elem:
                raise ConfigError(
                    f"log_{buf}_buff_size={log_size} is too small: one {buf.upper()} element is "
                    f"{elem} bytes, so it must be at least {elem.bit_length() - 1}")
            depth = getattr(self, f"{buf}_depth")
            if depth > 1 << 16:
                raise ConfigError(
                    f"log_{buf}_buff_size={log_size} gives {depth} {buf.upper()} elements, more "
                    f"than the 16-bit sram_base field of LOAD can address (65536)")
        # The DMA moves whole bus beats: every tensor element must be a whole number of beats
        # (micro-ops, 4 bytes, are the one exception; the hardware selects them within a beat).
        for buf in ("inp", "wgt", "acc", "out"):
            elem = getattr(self, f"{buf}_elem_bytes")
            if elem % self.axi_bytes:
                raise ConfigError(
                    f"a {buf.upper()} element is {elem} bytes, not a multiple of the "
                    f"{self.axi_data_width}-bit AXI bus; use a larger log_block/log_batch or a "
                    f"narrower axi_data_width")
        # The instruction layout itself is validated by the ISA module (isa.InsnLayout).
        from .isa import InsnLayout  # local: isa imports this module
        InsnLayout(self)

    # --- element geometry --------------------------------------------------------------------
    @property
    def batch(self) -> int:
        """Rows of the input tile processed per cycle (BATCH)."""
        return 1 << self.log_batch

    @property
    def block_in(self) -> int:
        """Reduction width of the GEMM core (BLOCK_IN)."""
        return 1 << self.log_block

    @property
    def block_out(self) -> int:
        """Output width of the GEMM core (BLOCK_OUT)."""
        return 1 << self.log_block

    @property
    def inp_width(self) -> int:
        return 1 << self.log_inp_width

    @property
    def wgt_width(self) -> int:
        return 1 << self.log_wgt_width

    @property
    def acc_width(self) -> int:
        return 1 << self.log_acc_width

    @property
    def out_width(self) -> int:
        """Output elements have the input width (int8)."""
        return self.inp_width

    @property
    def uop_elem_bytes(self) -> int:
        return 4

    @property
    def inp_elem_bytes(self) -> int:
        return self.batch * self.block_in * self.inp_width // 8

    @property
    def wgt_elem_bytes(self) -> int:
        return self.block_out * self.block_in * self.wgt_width // 8

    @property
    def acc_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.acc_width // 8

    @property
    def out_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.out_width // 8

    # --- buffer depths (elements) --------------------------------------------------------------
    @property
    def uop_depth(self) -> int:
        return (1 << self.log_uop_buff_size) // self.uop_elem_bytes

    @property
    def inp_depth(self) -> int:
        return (1 << self.log_inp_buff_size) // self.inp_elem_bytes

    @property
    def wgt_depth(self) -> int:
        return (1 << self.log_wgt_buff_size) // self.wgt_elem_bytes

    @property
    def acc_depth(self) -> int:
        return (1 << self.log_acc_buff_size) // self.acc_elem_bytes

    @property
    def out_depth(self) -> int:
        """The output buffer mirrors the accumulator buffer element for element."""
        return self.acc_depth

    @property
    def log_out_buff_size(self) -> int:
        return self.log_acc_buff_size + self.log_inp_width - self.log_acc_width

    @property
    def log_uop_depth(self) -> int:
        return self.uop_depth.bit_length() - 1

    @property
    def log_inp_depth(self) -> int:
        return self.inp_depth.bit_length() - 1

    @property
    def log_wgt_depth(self) -> int:
        return self.wgt_depth.bit_length() - 1

    @property
    def log_acc_depth(self) -> int:
        return self.acc_depth.bit_length() - 1

    @property
    def macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per cycle of the GEMM core."""
        return self.batch * self.block_in * self.block_out

    @property
    def peak_gops(self) -> float:
        """Peak throughput in GOPS (2 ops per MAC) at ``clock_mhz``."""
        return 2 * self.macs_per_cycle * self.clock_mhz / 1000

    @property
    def axi_bytes(self) -> int:
        return self.axi_data_width // 8

    @property
    def fpga_family(self) -> str:
        return FPGA_PARTS[self.fpga_part]["family"]

    @property
    def fpga_resources(self) -> dict:
        return dict(FPGA_PARTS[self.fpga_part])

    # --- naming ----------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """VTA-style name of every artifact built from this configuration.

        ``{BATCH}x{BLOCK}_i{inp}w{wgt}a{acc}_{uop}_{inp}_{wgt}_{acc}``, e.g.
        ``1x16_i8w8a32_15_15_18_17``, extended with the AXI width and queue depths when they
        differ from the defaults, because they change the hardware too.
        """
        name = (f"{self.batch}x{self.block_in}_i{self.inp_width}w{self.wgt_width}"
                f"a{self.acc_width}_{self.log_uop_buff_size}_{self.log_inp_buff_size}_"
                f"{self.log_wgt_buff_size}_{self.log_acc_buff_size}")
        if self.axi_data_width != 64:
            name += f"_axi{self.axi_data_width}"
        if self.cmd_queue_depth != 64 or self.dep_queue_depth != 8:
            name += f"_q{self.cmd_queue_depth}d{self.dep_queue_depth}"
        return name

    # --- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON form: every field, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def derived(self) -> dict:
        """Every derived size, for display and for artifacts' metadata."""
        names = ["fingerprint", "batch", "block_in", "block_out", "inp_elem_bytes",
                 "wgt_elem_bytes", "acc_elem_bytes", "out_elem_bytes", "uop_depth", "inp_depth",
                 "wgt_depth", "acc_depth", "out_depth", "log_out_buff_size", "macs_per_cycle",
                 "peak_gops", "fpga_family"]
        return {n: getattr(self, n) for n in names}

    @classmethod
    def from_dict(cls, data: dict, *, name: str = "custom") -> "HwConfig":
        """Build a configuration from a dict, rejecting unknown keys by name."""
        if not isinstance(data, dict):
            raise ConfigError(f"a hardware configuration must be a JSON object, not {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown configuration field(s) {', '.join(map(repr, unknown))}; "
                f"known fields are {', '.join(sorted(known))}")
        data = dict(data)
        data.setdefault("name", name)
        return cls(**data)

    def replace(self, **changes) -> "HwConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def list_presets() -> list[str]:
    """Names of the bundled presets."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.json"))


def load_config(spec: "str | os.PathLike | HwConfig | None" = None) -> HwConfig:
    """Load a configuration by preset name, JSON file path, or pass one through.

    ``None`` gives the default preset (``pynq-z1``, equal to VTA's default).
    """
    if isinstance(spec, HwConfig):
        return spec
    if spec is None:
        spec = "pynq-z1"
    spec = os.fspath(spec)
    preset = PRESETS_DIR / f"{spec}.json"
    if preset.is_file():
        path, name = preset, spec
    else:
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(
                f"no preset or JSON file named {spec!r}; presets are {', '.join(list_presets())}")
        name = path.stem
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read hardware configuration {str(path)!r}: {exc}") from None
    return HwConfig.from_dict(data, name=name)
