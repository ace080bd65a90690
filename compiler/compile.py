"""The compilation pipeline: ONNX model -> :class:`~pyvta.compiler.artifact.CompiledModel`.

Stages, each reported through ``progress`` (one line per stage or layer):

1. ``import``    ONNX -> float Graph, constant folding, BN folding, DCE (``frontend``)
2. ``prepare``   accelerator-friendly rewrites (``passes.QUANTIZE_PASSES``)
3. ``calibrate`` / ``quantize``  activation ranges, int8 operators (``quantize``)
4. ``partition`` Accel nodes + CPU nodes (``partition``)
5. ``lower``     one AccelProgram per partition (``lower``, H5); an operator the lowering
   rejects goes back to the CPU with a warning, and the partitioning is redone.

:func:`run_compiled` executes a CompiledModel with the contract's semantics on ``cpu`` (Accel
nodes by the exact int8 references) or ``fsim`` (Accel nodes on the functional simulator):
the two must agree bit for bit.
"""

from __future__ import annotations

import sys

import numpy as np

from .. import __version__
from ..hw.config import load_config
from .artifact import CompiledModel
from .calibrate import load_calibration, random_calibration
from .frontend import import_model
from .partition import ACCEL_OP, partition
from .passes import QUANTIZE_PASSES, run_passes
from .quantize import QUANT_DOMAIN, quantize

__all__ = ["CompileError", "compile_model", "run_compiled", "summary", "CompiledModel"]


class CompileError(RuntimeError):
    """The pipeline failed at a stage (the message names it)."""


def _lower_all(cfg, qgraph, progress, warn):
    from .lower import LoweringError, lower
    excluded: set = set()
    while True:
        pgraph, parts = partition(qgraph, cfg, exclude=excluded)
        programs = []
        retry = False
        for part in parts:
            ops = part.ops

            def step(i, n, name, _k=part.index):
                if progress:
                    progress(f"lower: partition {_k} op {i + 1}/{n} {name}")
            try:
                programs.append(lower(cfg, ops, part.inputs, part.outputs, part.shapes,
                                      progress=step))
            except LoweringError as exc:
                culprit = next((op.name for op in part.ops
                                if str(exc).startswith(op.name + ":")), None)
                if culprit is None or culprit in excluded:
                    raise CompileError(f"lowering partition {part.index} failed: {exc}") \
                        from None
                warn(f"{culprit} runs on the CPU: {exc}")
                excluded.add(culprit)
                retry = True
                break
        if not retry:
            return pgraph, parts, programs, sorted(excluded)


def compile_model(model, config=None, calib=None, *, input_shapes=None, quant="per-channel",
                  calib_method="minmax", progress=None, warn=None) -> CompiledModel:
    """Compile an ONNX model (path or ModelProto) for a hardware configuration.

    Parameters
    ----------
    config : preset name, JSON path or HwConfig (default: pynq-z1)
    calib : ``.npz`` path, folder of ``.npy``, or ``{input: samples}``; ``None`` falls back to
        random inputs with a loud warning.
    input_shapes : ``{input: shape}`` fixing dynamic dims.
    quant : ``"per-channel"`` or ``"pow2"``; calib_method : ``"minmax"`` or ``"percentile"``.
    progress, warn : ``callable(str)`` for progress lines and warnings (default: stderr).
    """
    cfg = load_config(config)
    warn = warn or (lambda msg: print(f"pyvta: WARNING: {msg}", file=sys.stderr))
    say = progress or (lambda msg: None)
    say(f"import: {model if not hasattr(model, 'graph') else model.graph.name}")
    graph = import_model(model, input_shapes)
    say(f"import: {len(graph.nodes)} nodes after folding")
    graph = run_passes(graph, QUANTIZE_PASSES)
    if calib is None:
        data = random_calibration(graph)
        calib_source = "random uniform [-1, 1) (no calibration data given)"
    else:
        data = load_calibration(calib, graph)
        calib_source = str(calib) if not isinstance(calib, dict) else "in-memory arrays"
    count = min(len(a) for a in data.values())
    say(f"calibrate: {count} samples, method {calib_method}, quantization {quant}")
    qm = quantize(graph, data, mode=quant, method=calib_method, progress=say)
    pgraph, parts, programs, excluded = _lower_all(cfg, qm.graph, say, warn)
    onnx_nodes = {n.name: n.attrs.get("onnx_nodes", [n.name]) for n in qm.graph.nodes
                  if n.domain == QUANT_DOMAIN}
    node_map = []
    for k, prog in enumerate(programs):
        for name, begin, end in prog.node_ranges:
            node_map.append({"program": k, "op": name, "insn_begin": int(begin),
                             "insn_end": int(end), "onnx_nodes": onnx_nodes.get(name, [name]),
                             "est_cycles": int(prog.est_cycles.get(name, 0))})
    meta = {
        "pyvta_version": __version__,
        "source": str(model) if not hasattr(model, "graph") else model.graph.name,
        "quantization": {"mode": quant, "calib_method": calib_method,
                         "calib_source": calib_source, "calib_samples": int(count),
                         "scales": {k: float(v) for k, v in qm.scales.items()}},
        "report": [{"name": r.name, "op": r.op, "sqnr_db": float(r.sqnr_db),
                    "scale": float(r.scale)} for r in qm.report],
        "node_map": node_map,
        "cpu_nodes": [n.name for n in pgraph.nodes if n.op != ACCEL_OP],
        "cpu_fallback": excluded,
        "partitions": [{"node": p.node_name, "ops": [o.name for o in p.ops],
                        "inputs": p.inputs, "outputs": p.outputs} for p in parts],
    }
    say(f"done: {len(parts)} partition(s), {len(programs)} program(s)")
    return CompiledModel(graph=pgraph, programs=programs, config=cfg,
                         inputs=list(pgraph.inputs), outputs=list(pgraph.outputs), meta=meta)


def summary(cm: CompiledModel) -> str:
    """A human-readable summary: partitions, accelerator vs CPU ops, cycles, SQNR per layer."""
    lines = [f"compiled for {cm.config.fingerprint} ({cm.config.name}); quantization "
             f"{cm.meta['quantization']['mode']}, calibration "
             f"{cm.meta['quantization']['calib_method']} on "
             f"{cm.meta['quantization']['calib_samples']} samples"]
    accel_ops = sum(len(p["ops"]) for p in cm.meta["partitions"])
    cpu = [n for n in cm.graph.nodes if n.op != ACCEL_OP]
    lines.append(f"partitions: {len(cm.programs)}; operators on the accelerator: {accel_ops}; "
                 f"CPU nodes: {len(cpu)} ({', '.join(sorted({n.op for n in cpu})) or 'none'})")
    if cm.meta.get("cpu_fallback"):
        lines.append(f"moved back to the CPU by the lowering: {', '.join(cm.meta['cpu_fallback'])}")
    total = 0
    sqnr = {r["name"]: r["sqnr_db"] for r in cm.meta["report"]}
    lines.append(f"  {'program':>7}  {'operator':<32} {'insns':>7} {'est. cycles':>12} "
                 f"{'SQNR dB':>8}")
    for e in cm.meta["node_map"]:
        total += e["est_cycles"]
        insns = e["insn_end"] - e["insn_begin"]
        lines.append(f"  {e['program']:>7}  {e['op'][:32]:<32} {insns:>7} "
                     f"{e['est_cycles']:>12} {sqnr.get(e['op'], float('nan')):>8.1f}")
    mhz = cm.config.clock_mhz
    lines.append(f"estimated accelerator cycles: {total} ({total / mhz:.1f} us at {mhz:g} MHz)")
    for r in cm.meta["report"]:
        if r["op"] == "output":
            lines.append(f"output {r['name']!r}: SQNR {r['sqnr_db']:.1f} dB vs float")
    return "\n".join(lines)


def run_compiled(cm: CompiledModel, feeds: dict, target: str = "cpu", keep: bool = False) -> dict:
    """Run a CompiledModel: CPU nodes in numpy, Accel nodes on ``target`` ("cpu" = exact int8
    references of the partition's ops, "fsim" = the functional simulator)."""
    from ..runtime.cpu.numpy_ops import run_node
    if target not in ("cpu", "fsim"):
        raise ValueError(f"target {target!r} is unknown; expected cpu or fsim")
    env = dict(cm.graph.initializers)
    for v in cm.inputs:
        if v.name not in feeds:
            raise ValueError(f"missing model input {v.name!r}")
        x = np.asarray(feeds[v.name])
        if x.shape != v.shape:
            raise ValueError(f"input {v.name!r}: expected shape {v.shape}, got {x.shape}")
        env[v.name] = x.astype(v.dtype)
    for n in cm.graph.nodes:
        if n.op == ACCEL_OP and n.domain == QUANT_DOMAIN:
            prog = cm.programs[n.attrs["program"]]
            if target == "cpu":
                for op in prog.ops:
                    env[op.output] = op.reference(*[env[i] for i in op.inputs])
            else:
                from .lower import run_fsim
                outs, _ = run_fsim(prog, cm.config, {i: env[i] for i in n.inputs})
                env.update(outs)
        else:
            outs = run_node(n, [env[i] if i else None for i in n.inputs])
            env.update({o: a for o, a in zip(n.outputs, outs) if o})
    if keep:
        return env
    return {v.name: env[v.name] for v in cm.outputs}
