"""``pyvta compile``: ONNX model -> MODEL.pyvta."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..hw.config import list_presets

__all__ = ["register"]


def register(sub):
    p = sub.add_parser("compile", help="compile an ONNX model into a .pyvta artifact",
                       description="Import, quantize (int8, post-training), partition and lower "
                       "an ONNX model for a hardware configuration.")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("-o", "--output", default=None,
                   help="artifact to write (default: MODEL with suffix .pyvta)")
    p.add_argument("--config", default=None,
                   help=f"preset ({', '.join(list_presets())}) or JSON file (default: pynq-z1)")
    p.add_argument("--calib", default=None,
                   help="calibration data: .npz with one array per input (samples on axis 0) "
                   "or a folder of .npy files; without it, random data with a warning")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="fix an input's dynamic dims (repeatable), e.g. x=1,3,224,224")
    p.add_argument("--quant", choices=("per-channel", "pow2"), default="per-channel",
                   help="per-channel weight scales with integer multipliers, or VTA's "
                   "power-of-two scales (default: per-channel)")
    p.add_argument("--calib-method", choices=("minmax", "percentile", "entropy"),
                   default="minmax", help="activation range estimator (default: minmax)")
    p.add_argument("--verify", type=int, default=0, metavar="N",
                   help="after compiling, run N calibration samples on the int8 reference and "
                   "the functional simulator (must be bit-identical) and compare with the "
                   "float model")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_compile)


def _compile(args):
    from . import artifact
    from .compile import compile_model, summary
    from .frontend import parse_input_shapes
    start = time.perf_counter()

    def progress(msg):
        if not args.quiet:
            print(f"[{time.perf_counter() - start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    out = Path(args.output) if args.output else Path(args.model).with_suffix(".pyvta")
    cm = compile_model(args.model, args.config, args.calib,
                       input_shapes=parse_input_shapes(args.input_shape), quant=args.quant,
                       calib_method=args.calib_method, progress=progress)
    artifact.save(out, cm)
    print(summary(cm))
    if args.verify:
        _verify(cm, args, progress)
    print(f"wrote {out} ({out.stat().st_size} bytes) in {time.perf_counter() - start:.1f} s")


def _verify(cm, args, progress):
    """Bit-exactness of fsim vs the int8 reference, and agreement with the float model."""
    import numpy as np

    from .calibrate import iter_batches, load_calibration, random_calibration, run_float
    from .compile import run_compiled
    from .frontend import import_model, parse_input_shapes
    graph = import_model(args.model, parse_input_shapes(args.input_shape))
    data = (load_calibration(args.calib, graph) if args.calib
            else random_calibration(graph, args.verify))
    exact = agree = total = 0
    cos = []
    for i, feeds in enumerate(iter_batches(data)):
        if i >= args.verify:
            break
        progress(f"verify: sample {i + 1}/{args.verify}")
        ref = run_compiled(cm, feeds, "cpu")
        sim = run_compiled(cm, feeds, "fsim")
        flt = run_float(graph, feeds)
        for v in cm.outputs:
            exact += int(np.array_equal(ref[v.name], sim[v.name]))
            rows = len(flt[v.name])
            a, b = flt[v.name].reshape(rows, -1), ref[v.name].reshape(rows, -1)
            agree += int((a.argmax(1) == b.argmax(1)).sum())
            total += len(a)
            cos.append(float((a * b).sum() / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)))
    n = min(args.verify, len(next(iter(data.values()))))
    print(f"verify: fsim == int8 reference on {exact}/{n * len(cm.outputs)} outputs; top-1 "
          f"agreement with float {agree}/{total}; mean cosine similarity {np.mean(cos):.5f}")
    if exact != n * len(cm.outputs):
        raise RuntimeError("the functional simulator disagrees with the int8 reference")
