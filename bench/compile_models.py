"""Compile several models and print their figures side by side.

For each model: ONNX nodes before and after import, partitions, operators on the accelerator
vs nodes on the CPU (QuantizeLinear/DequantizeLinear included) and the share of the
accelerator, compile time, estimated accelerator cycles, output SQNR
against float, and int8-vs-float top-1 agreement / cosine on a few inputs.

    python bench/compile_models.py [--config pynq-z1] [--models digits,torch_block,squeezenet]
    (also: resnet50, shufflenet, inception_v2 - the ONNX package's light models with random
    weights; ResNet-50 takes about a minute to lower)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _light(name):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_frontend_models import randomized
    return randomized(name)


def load(name):
    """(model, calibration dict, input shapes) for a bench model name."""
    import onnx
    rng = np.random.default_rng(0)
    if name == "digits":
        d = ROOT / "examples" / "digits"
        return onnx.load(str(d / "digits.onnx")), dict(np.load(d / "calib.npz")), None
    if name == "torch_block":
        model = onnx.load(str(ROOT / "tests" / "data" / "torch_block_op17.onnx"))
        return model, {"x": rng.standard_normal((16, 3, 16, 16)).astype(np.float32)}, \
            {"x": (1, 3, 16, 16)}
    model = _light(name)
    inits = {t.name for t in model.graph.initializer}
    inp = next(i for i in model.graph.input if i.name not in inits)
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)
    return model, {inp.name: rng.standard_normal((4,) + shape).astype(np.float32)}, None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="pynq-z1")
    p.add_argument("--models", default="digits,torch_block,squeezenet")
    args = p.parse_args(argv)
    from pyvta.compiler.calibrate import iter_batches, load_calibration, run_float
    from pyvta.compiler.compile import compile_model, run_compiled
    rows = []
    for name in args.models.split(","):
        model, calib, shapes = load(name)
        t0 = time.perf_counter()
        cm = compile_model(model, args.config, calib, input_shapes=shapes,
                           progress=lambda m: None, warn=lambda m: None)
        seconds = time.perf_counter() - t0
        from pyvta.compiler.frontend import import_model
        graph = import_model(model, shapes)
        agree, cos = [], []
        for i, feeds in enumerate(iter_batches(load_calibration(calib, graph))):
            if i >= 3:
                break
            want = next(iter(run_float(graph, feeds).values())).reshape(1, -1)
            got = next(iter(run_compiled(cm, feeds).values())).reshape(1, -1)
            agree.append(int(want.argmax() == got.argmax()))
            cos.append(float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got)))
        accel = sum(len(p["ops"]) for p in cm.meta["partitions"])
        cpu = len([n for n in cm.graph.nodes if n.op != "Accel"])
        cycles = sum(e["est_cycles"] for e in cm.meta["node_map"])
        sqnr = [r["sqnr_db"] for r in cm.meta["report"] if r["op"] == "output"][0]
        rows.append((name, len(model.graph.node), len(graph.nodes), len(cm.programs), accel, cpu,
                     accel / max(1, accel + cpu), seconds, cycles, sqnr, np.mean(agree),
                     np.mean(cos)))
    head = (f"{'model':<13} {'onnx':>5} {'graph':>5} {'parts':>5} {'accel':>5} {'cpu':>4} "
            f"{'accel%':>6} {'compile s':>9} {'est. cycles':>12} {'SQNR dB':>7} {'top1':>5} "
            f"{'cosine':>7}")
    print(f"config {args.config}")
    print(head)
    for r in rows:
        print(f"{r[0]:<13} {r[1]:>5} {r[2]:>5} {r[3]:>5} {r[4]:>5} {r[5]:>4} {100 * r[6]:>5.0f}% "
              f"{r[7]:>9.1f} {r[8]:>12,} {r[9]:>7.1f} {r[10]:>5.2f} {r[11]:>7.4f}")


if __name__ == "__main__":
    main()
