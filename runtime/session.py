"""Run a compiled model (``MODEL.pyvta``) on one target: ``cpu``, ``fsim`` or ``rtl``.

:func:`load` returns a :class:`Session`; :meth:`Session.run` executes the partitioned graph in
order: CPU nodes on the CPU fallback (LLVM kernels, numpy where needed), ``pyvta.Accel`` nodes
on the target's device. Each accelerator program gets its own DRAM region, allocated and
filled with its constant segments (weights, biases, micro-ops) once per session; every call
only packs the partition's inputs, runs the relocated instruction stream and unpacks the
outputs. On the ``cpu`` target the partitions are emulated exactly with the int8 references of
their operators (``AccelProgram.ops``).

``Session.last_profile`` lists, per node, the wall time and (where the target has them)
cycles and counters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cpu.executor import CpuExecutor
from .devices import REGION_ALIGN, TARGETS, make_device

__all__ = ["load", "Session", "InputError", "ProfileEntry", "ACCEL_OP"]

ACCEL_OP = "Accel"


class InputError(ValueError):
    """The inputs given to :meth:`Session.run` do not match the model's."""


@dataclass
class ProfileEntry:
    """Time (and cycles) one node took in the last run."""
    node: str
    op: str
    where: str                 #: "cpu:llvm", "cpu:numpy", "cpu:view", or the accelerator target
    seconds: float
    cycles: int | None = None  #: measured cycles (rtl only)
    est_cycles: int | None = None   #: the compiler's estimate (accelerator partitions)
    counters: dict = field(default_factory=dict)


class _Region:
    """One accelerator program placed in device memory."""

    def __init__(self, prog, device, cfg, use_llvm: bool):
        self.prog = prog
        self.size = -(-prog.dram_size // REGION_ALIGN) * REGION_ALIGN
        self.base = device.alloc(self.size)
        for offset, data in prog.segments:
            device.write(self.base + offset, data)
        self.insns = prog.relocated_insns(self.base, cfg)
        self.packers = {}
        self.unpackers = {}
        if use_llvm:
            from .cpu.llvm.ops import plan_pack, plan_unpack
            for p in prog.inputs:
                if p.layout == "packed":
                    out, fn = plan_pack(p.shape, cfg)
                    self.packers[p.name] = (out, fn)
            for p in prog.outputs:
                if p.layout == "packed":
                    self.unpackers[p.name] = plan_unpack(p.shape, cfg)


class Session:
    """A compiled model bound to a target; see :func:`load`."""

    def __init__(self, model, target: str = "fsim", simulator: str = "verilator",
                 cpu_backend: str | None = None, progress=None):
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
        self.model = model
        self.cfg = model.config
        self.target = target
        self.progress = progress
        self.executor = CpuExecutor(model.graph, backend=cpu_backend, accel=self._run_accel)
        self.executor.prepare()
        self.device = make_device(target, self.cfg, simulator, progress=progress)
        self.regions = {}
        if self.device is not None:
            use_llvm = self.executor.backend == "llvm"
            for k, prog in enumerate(model.programs):
                self.regions[k] = _Region(prog, self.device, self.cfg, use_llvm)
        self.inputs = {v.name: v for v in model.inputs}
        #: list of :class:`ProfileEntry` for the last :meth:`run`
        self.last_profile: list = []
        self._accel_stats: dict = {}

    # -- inputs ----------------------------------------------------------------------------

    def _check_feeds(self, feeds: dict) -> dict:
        if not isinstance(feeds, dict):
            raise InputError(f"inputs must be a dict {{name: array}}, not {type(feeds).__name__}")
        expected = ", ".join(f"{v.name} {tuple(v.shape)} {v.dtype}"
                             for v in self.inputs.values())
        for name in feeds:
            if name not in self.inputs:
                raise InputError(f"unknown input {name!r}; the model's inputs are: {expected}")
        out = {}
        for name, v in self.inputs.items():
            if name not in feeds:
                raise InputError(f"missing input {name!r} ({tuple(v.shape)} {v.dtype}); the "
                                 f"model's inputs are: {expected}")
            x = np.asarray(feeds[name])
            if x.dtype != v.dtype:
                raise InputError(f"input {name!r} has dtype {x.dtype}, expected {v.dtype} "
                                 f"(convert with .astype(np.{v.dtype}))")
            if tuple(x.shape) != tuple(v.shape):
                raise InputError(f"input {name!r} has shape {tuple(x.shape)}, expected "
                                 f"{tuple(v.shape)}")
            out[name] = np.ascontiguousarray(x)
        return out

    # -- accelerator partitions ------------------------------------------------------------

    def _run_accel(self, node, inputs):
        k = int(node.attrs["program"])
        prog = self.model.programs[k]
        env = dict(zip(node.inputs, inputs))
        t0 = time.perf_counter()
        if self.device is None:
            # cpu target: exact int8 emulation, operator by operator.
            for op in prog.ops:
                env[op.output] = op.reference(*[env[i] for i in op.inputs])
            self._accel_stats[node.name] = (time.perf_counter() - t0, None, {})
            return [env[o] for o in node.outputs]
        region = self.regions[k]
        dev = self.device
        for p in prog.inputs:
            x = env[p.name]
            if p.name in region.packers:
                x = np.asarray(x)
                if x.dtype != np.int8 or tuple(x.shape) != p.shape:
                    raise RuntimeError(f"partition {node.name!r}: input {p.name!r} is "
                                       f"{x.dtype}{tuple(x.shape)}, expected int8{p.shape}")
                buf, pack = region.packers[p.name]
                pack(x)
                dev.write(region.base + p.offset, buf)
            else:
                dev.write(region.base + p.offset, p.pack(x, self.cfg))
        stats = dev.run(region.insns)
        outs = {}
        for p in prog.outputs:
            raw = dev.read(region.base + p.offset, p.nbytes(self.cfg))
            if p.name in region.unpackers:
                buf, unpack = region.unpackers[p.name]
                unpack(raw)
                outs[p.name] = buf
            else:
                outs[p.name] = p.unpack(raw.tobytes(), self.cfg)
        self._accel_stats[node.name] = (time.perf_counter() - t0, stats.cycles,
                                        dict(stats.counters))
        return [outs[o] for o in node.outputs]

    # -- running ---------------------------------------------------------------------------

    def run(self, feeds: dict) -> dict:
        """Run the model on ``{input name: array}``; returns ``{output name: array}``.

        Raises :class:`InputError` for unknown, missing, mis-shaped or mis-typed inputs.
        """
        feeds = self._check_feeds(feeds)
        self._accel_stats = {}
        outs = self.executor.run(feeds)
        profile = []
        for node in self.model.graph.nodes:
            seconds = self.executor.node_times.get(node.name, 0.0)
            if node.op == ACCEL_OP:
                prog = self.model.programs[int(node.attrs["program"])]
                _, cycles, counters = self._accel_stats.get(node.name, (0.0, None, {}))
                profile.append(ProfileEntry(node.name, node.op, self.target, seconds, cycles,
                                            int(sum(prog.est_cycles.values())), counters))
            else:
                where = "cpu:" + self.executor.node_backend.get(node.name, "numpy")
                profile.append(ProfileEntry(node.name, node.op, where, seconds))
        self.last_profile = profile
        # Copies: the executor reuses its buffers on the next call.
        return {name: np.array(a, copy=True) for name, a in outs.items()}

    def profile_table(self) -> str:
        """``last_profile`` as an aligned text table."""
        lines = [f"{'node':36} {'op':18} {'where':10} {'ms':>9} {'cycles':>10} {'est.cyc':>9}"]
        for e in self.last_profile:
            lines.append(f"{e.node[:36]:36} {e.op[:18]:18} {e.where:10} {e.seconds * 1e3:9.3f} "
                         f"{'' if e.cycles is None else e.cycles:>10} "
                         f"{'' if e.est_cycles is None else e.est_cycles:>9}")
        total = sum(e.seconds for e in self.last_profile)
        lines.append(f"{'total':36} {'':18} {'':10} {total * 1e3:9.3f}")
        return "\n".join(lines)

    def close(self):
        """Release the device."""
        if self.device is not None:
            self.device.close()


def load(model, target: str = "fsim", config=None, simulator: str = "verilator",
         cpu_backend: str | None = None, progress=None) -> Session:
    """Load a compiled model (path to a ``.pyvta`` file or a ``CompiledModel``) for ``target``.

    Parameters
    ----------
    model : str, Path or CompiledModel
    target : {"cpu", "fsim", "rtl"}
    config : preset name, JSON path or HwConfig, optional
        The hardware configuration the caller expects; a model compiled for another one is
        rejected (``ArtifactError``) with a message saying to recompile.
    simulator : {"verilator", "icarus"}
        RTL simulator for ``target="rtl"``.
    cpu_backend : {"auto", "llvm", "numpy"}, optional
    progress : callable(str), optional
        Progress messages (long RTL runs).
    """
    from ..compiler.artifact import ArtifactError, CompiledModel, load as load_artifact
    from ..hw.config import load_config
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, not {target!r}")
    if isinstance(model, (str, Path)):
        if not Path(model).exists():
            raise FileNotFoundError(f"compiled model {str(model)!r} does not exist")
        cm = load_artifact(model, config)
    elif isinstance(model, CompiledModel):
        cm = model
        if config is not None:
            want = load_config(config)
            if want.fingerprint != cm.config.fingerprint:
                raise ArtifactError(f"the model was compiled for configuration "
                                    f"{cm.config.fingerprint}, not {want.fingerprint}: "
                                    f"recompile it with --config")
    else:
        raise TypeError(f"load() takes a path or a CompiledModel, not {type(model).__name__}")
    return Session(cm, target=target, simulator=simulator, cpu_backend=cpu_backend,
                   progress=progress)
