"""Accuracy of the digits model: float, pyvta int8, and onnxruntime's own int8, side by side.

Usage: ``python examples/digits/evaluate.py [--config pynq-z1] [--fsim N]``

* float: onnxruntime on ``digits.onnx``
* pyvta int8: the compiled model (per-channel and pow2 quantization, min-max and percentile
  calibration) run by the pyvta runtime on target ``cpu`` (accelerator partitions emulated by
  their exact int8 references); ``--fsim N`` also runs the first N test images on target
  ``fsim`` (the functional simulator) and checks they are bit-identical
* onnxruntime int8: ``onnxruntime.quantization.quantize_static`` with the same calibration
  set, with its default settings and with pyvta's scheme (symmetric int8 activations,
  per-channel weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _ort_accuracy(model_path, x, y):
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = [int(sess.run(None, {name: x[i:i + 1]})[0].argmax()) for i in range(len(x))]
    return float(np.mean(np.asarray(pred) == y))


def _ort_int8_accuracy(model_path, calib, x, y, **options):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"x": calib[i:i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "digits_int8.onnx"
        if options.pop("symmetric", False):
            options.update(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                           per_channel=True, extra_options={"ActivationSymmetric": True})
        quantize_static(str(model_path), str(out), Reader(), quant_format=QuantFormat.QDQ,
                        **options)
        return _ort_accuracy(out, x, y)


def _pyvta_accuracy(cm, x, y, target="cpu", limit=None):
    """Accuracy through the pyvta runtime (``pyvta.runtime.load``) on ``target``."""
    from pyvta.runtime import load
    session = load(cm, target=target)
    n = len(x) if limit is None else min(limit, len(x))
    out = [session.run({"x": x[i:i + 1]})["logits"] for i in range(n)]
    pred = np.array([int(o.argmax()) for o in out])
    return float(np.mean(pred == y[:n])), out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="pynq-z1")
    p.add_argument("--fsim", type=int, default=50, metavar="N",
                   help="test images also run on the functional simulator (default 50)")
    args = p.parse_args(argv)
    from pyvta.compiler.compile import compile_model
    model = HERE / "digits.onnx"
    calib = np.load(HERE / "calib.npz")["x"]
    test = np.load(HERE / "test.npz")
    x, y = test["x"], test["y"]
    print(f"digits: {len(x)} held-out test images, {len(calib)} calibration images "
          f"(training split), config {args.config}")
    f_acc = _ort_accuracy(model, x, y)
    rows = [("float (onnxruntime)", f_acc, "")]
    best = None
    schemes = [("per-channel", "minmax"), ("per-channel", "percentile"),
               ("per-channel", "entropy"), ("pow2", "minmax"), ("pow2", "percentile")]
    for quant, method in schemes:
        t0 = time.perf_counter()
        cm = compile_model(model, args.config, HERE / "calib.npz", quant=quant,
                           calib_method=method, warn=lambda m: print(m, file=sys.stderr))
        acc, ref_out = _pyvta_accuracy(cm, x, y)
        note = f"compiled in {time.perf_counter() - t0:.1f} s"
        if args.fsim and quant == "per-channel" and method == "minmax":
            sim_acc, sim_out = _pyvta_accuracy(cm, x, y, "fsim", args.fsim)
            same = sum(np.array_equal(a, b) for a, b in zip(ref_out, sim_out))
            note += f"; fsim bit-identical on {same}/{len(sim_out)} images"
            best = acc
        rows.append((f"pyvta int8 {quant}, {method}", acc, note))
    rows.append(("onnxruntime quantize_static (defaults)", _ort_int8_accuracy(model, calib, x, y),
                 "QDQ, asymmetric uint8 activations, per-tensor int8 weights"))
    rows.append(("onnxruntime quantize_static (symmetric)",
                 _ort_int8_accuracy(model, calib, x, y, symmetric=True),
                 "QDQ, symmetric int8 activations, per-channel weights (pyvta's scheme)"))
    print(f"{'model':<42} {'accuracy':>9} {'vs float':>9}")
    for name, acc, note in rows:
        print(f"{name:<42} {100 * acc:8.2f}% {100 * (acc - f_acc):+8.2f}  {note}")
    ok = best is not None and best >= f_acc - 0.005
    print(f"pyvta int8 (default: per-channel, minmax) within 0.5 points of float: "
          f"{'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
