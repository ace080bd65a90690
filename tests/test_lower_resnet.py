"""A whole (small-image) ResNet-18 through the real compiler pipeline, lowered and run on fsim.

Uses the quantizer's own requantization choices (pre-shifts, large add multipliers), so the
ALU rewrites of the lowering (bias folding, re-initialisation without reset, multiplier
digits) are checked against the qops references on realistic parameters.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from pyvta.compiler.lower import AccelOp, lower, run_fsim  # noqa: E402


@pytest.mark.slow
def test_resnet18_64px_bit_exact_on_fsim():
    from models import resnet18
    from pyvta.compiler.calibrate import random_calibration
    from pyvta.compiler.frontend import import_model
    from pyvta.compiler.partition import partition
    from pyvta.compiler.quantize import quantize
    graph = import_model(resnet18(image=64))
    qm = quantize(graph, random_calibration(graph, samples=1), report=False)
    _, parts = partition(qm.graph, "pynq-z1")
    kinds = {type(o.qop).__name__ for p in parts for o in p.ops}
    assert {"QConv2d", "QMaxPool", "QAdd", "QAvgPool", "QDense"} <= kinds
    rng = np.random.default_rng(0)
    for part in parts:
        ops = [AccelOp(o.name, o.qop, o.inputs, o.output, o.in_shapes, o.out_shape)
               for o in part.ops]
        prog = lower("pynq-z1", ops, part.inputs, part.outputs, part.shapes)
        feeds = {n: rng.integers(-128, 128, part.shapes[n], dtype=np.int8) for n in part.inputs}
        out, _ = run_fsim(prog, "pynq-z1", feeds)
        vals = dict(feeds)
        for op in ops:
            vals[op.output] = op.reference(*[vals[i] for i in op.inputs])
        for name in part.outputs:
            assert np.array_equal(out[name], vals[name]), name
