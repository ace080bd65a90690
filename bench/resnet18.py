"""ResNet-18 (ImageNet, 224x224, random weights) compiled for a preset: compile time, cycles.

Runs the compiler pipeline (ONNX import, post-training quantization on random calibration
data, partitioning, lowering) and prints, per accelerator node, the cost model's cycle estimate
next to its compute bound (MACs / MACs-per-cycle), then the whole network against the
network's compute bound (1.814 GMAC / 256 = 7.09 M cycles at the default preset).
Then runs one layer (``--fsim-layer``), or the whole first partition (``--fsim-all``), on the
functional simulator and compares it bit for bit with the qops reference.

Usage: ``python bench/resnet18.py [--preset pynq-z1] [--mode per-channel|pow2]
[--fsim-layer layer1.0.conv1] [--fsim-all]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import RESNET18_MACS, resnet18  # noqa: E402

from pyvta.compiler.calibrate import random_calibration  # noqa: E402
from pyvta.compiler.frontend import import_model  # noqa: E402
from pyvta.compiler.lower import AccelOp, lower, op_macs, run_fsim  # noqa: E402
from pyvta.compiler.lower.banks import check_lanes  # noqa: E402
from pyvta.compiler.partition import partition  # noqa: E402
from pyvta.compiler.quantize import quantize  # noqa: E402
from pyvta.hw.config import load_config  # noqa: E402


def compile_resnet18(preset: str, mode: str, samples: int = 2):
    """Returns (cfg, partitioned graph, [(partition, AccelProgram)], timings dict)."""
    cfg = load_config(preset)
    t0 = time.perf_counter()
    model = resnet18()
    t1 = time.perf_counter()
    graph = import_model(model)
    qm = quantize(graph, random_calibration(graph, samples=samples), report=False, mode=mode)
    t2 = time.perf_counter()
    pg, parts = partition(qm.graph, cfg)
    t3 = time.perf_counter()
    progs = []
    for p in parts:
        ops = [AccelOp(o.name, o.qop, o.inputs, o.output, o.in_shapes, o.out_shape)
               for o in p.ops]
        progs.append((p, lower(cfg, ops, p.inputs, p.outputs, p.shapes)))
    t4 = time.perf_counter()
    return cfg, pg, progs, {"build": t1 - t0, "import+quantize": t2 - t1,
                            "partition": t3 - t2, "lower": t4 - t3, "compile": t4 - t1}


def _fsim_check(cfg, prog, part, layer=None):
    """Run ``layer`` (alone) or the whole partition on fsim; compare with the references."""
    rng = np.random.default_rng(0)
    if layer is not None:
        op = next(o for o in prog.ops if o.name == layer)
        feeds = {n: rng.integers(-128, 128, s, dtype=np.int8)
                 for n, s in zip(op.inputs, op.in_shapes)}
        sub = lower(cfg, [op], list(dict.fromkeys(op.inputs)), [op.output],
                    {n: s for n, s in zip(op.inputs, op.in_shapes)})
        t = time.perf_counter()
        out, cnt = run_fsim(sub, cfg, feeds)
        dt = time.perf_counter() - t
        ref = op.reference(*[feeds[n] for n in op.inputs])
        return np.array_equal(out[op.output], ref), dt, cnt
    feeds = {p.name: rng.integers(-128, 128, p.shape, dtype=np.int8) for p in prog.inputs}
    t = time.perf_counter()
    out, cnt = run_fsim(prog, cfg, feeds)
    dt = time.perf_counter() - t
    vals = dict(feeds)
    for op in prog.ops:
        vals[op.output] = op.reference(*[vals[n] for n in op.inputs])
    return all(np.array_equal(out[n], vals[n]) for n in out), dt, cnt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="pynq-z1")
    ap.add_argument("--mode", default="per-channel", choices=["per-channel", "pow2"])
    ap.add_argument("--fsim-layer", default="layer1.0.conv1")
    ap.add_argument("--fsim-all", action="store_true")
    args = ap.parse_args(argv)
    cfg, pg, progs, times = compile_resnet18(args.preset, args.mode)
    print(f"ResNet-18 224x224, preset {args.preset} ({cfg.fingerprint}), quantization "
          f"{args.mode}")
    print("times: " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()))
    cpu = [n.op for n in pg.nodes if n.op != "Accel"]
    print(f"CPU nodes: {cpu}")
    print(f"{'node':24s} {'op':9s} {'MMAC':>8s} {'bound':>9s} {'est cyc':>9s} {'ratio':>6s}"
          f"  tiling")
    total_est = total_macs = 0
    for part, prog in progs:
        for op in prog.ops:
            macs = op_macs(op)
            bound = macs / cfg.macs_per_cycle
            est = prog.est_cycles[op.name]
            total_est += est
            total_macs += macs
            ratio = f"{est / bound:6.2f}" if bound else "     -"
            tiling = {k: v for k, v in prog.info[op.name].items() if k != "cost"}
            print(f"{op.name:24s} {type(op.qop).__name__:9s} {macs / 1e6:8.1f} {bound:9.0f} "
                  f"{est:9d} {ratio}  {tiling}")
    bound = RESNET18_MACS / cfg.macs_per_cycle
    print(f"MACs on the accelerator: {total_macs} (model {RESNET18_MACS})")
    print(f"total: {total_est} cycles = {total_est / cfg.clock_mhz / 1e3:.1f} ms at "
          f"{cfg.clock_mhz:g} MHz; compute bound {bound:.0f} cycles; ratio "
          f"{total_est / bound:.3f} (floor 1.3); VTA on PYNQ-Z1: 420 ms")
    print(f"instructions: {sum(p.num_insns for _, p in progs)}")
    # The two-lane scheduling rule (docs/scheduling.md), checked statically on every program.
    lanes = [check_lanes(cfg, prog) for _, prog in progs]
    models = {prog.info.get("__total__", {}).get("model") for _, prog in progs}
    print(f"lane rules hold: {sum(c['tiles'] for c in lanes)} tiles, "
          f"{sum(c['transitions'] for c in lanes)} tile transitions; cycles from "
          f"{', '.join(sorted(m for m in models if m))}")
    part, prog = progs[0]
    if args.fsim_all:
        ok, dt, cnt = _fsim_check(cfg, prog, part)
        print(f"fsim whole partition 0 ({len(prog.ops)} ops): bit-exact={ok} in {dt:.1f} s; "
              f"{cnt.macs} MACs")
    elif args.fsim_layer:
        ok, dt, cnt = _fsim_check(cfg, prog, part, args.fsim_layer)
        print(f"fsim {args.fsim_layer}: bit-exact={ok} in {dt:.1f} s; {cnt.macs} MACs")


if __name__ == "__main__":
    main()
