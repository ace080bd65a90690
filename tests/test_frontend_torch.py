"""Real PyTorch exports (tests/data, see make_torch_exports.py): dynamic batch, BN, shape
arithmetic, Relu6 as Clip with inputs. Import must fold them away and compute what
onnxruntime computes on the original; compilation must give fsim == int8 reference."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from pyvta.compiler.compile import compile_model, run_compiled  # noqa: E402
from pyvta.compiler.frontend import FrontendError, export_model, import_model  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
RNG = np.random.default_rng(5)


@pytest.mark.parametrize("opset", [11, 17])
def test_torch_export_imports_and_matches_onnxruntime(opset):
    path = DATA / f"torch_block_op{opset}.onnx"
    graph = import_model(path, {"x": (3, 3, 16, 16)})
    ops = [n.op for n in graph.nodes]
    for gone in ("Shape", "Gather", "Unsqueeze", "Constant", "BatchNormalization", "Cast",
                 "Identity"):
        assert gone not in ops, ops
    assert ops.count("Conv") == 3 and "Gemm" in ops
    assert all(v.shape and all(d > 0 for d in v.shape)
               for k, v in graph.values.items() if k not in graph.initializers)
    x = RNG.standard_normal((3, 3, 16, 16)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = ort.InferenceSession(export_model(graph).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_torch_export_needs_batch_dim():
    with pytest.raises(FrontendError, match=r"input 'x' dim 0 \('batch'\) is dynamic"):
        import_model(DATA / "torch_block_op17.onnx")


def test_torch_export_compiles_bit_exact():
    path = DATA / "torch_block_op17.onnx"
    calib = {"x": RNG.standard_normal((8, 3, 16, 16)).astype(np.float32)}
    cm = compile_model(path, "pynq-z1", calib, input_shapes={"x": (1, 3, 16, 16)})
    accel = [o for p in cm.meta["partitions"] for o in p["ops"]]
    # Relu6 (Clip) fused into the depthwise conv: it is not a CPU node.
    assert "Clip" not in {n.op for n in cm.graph.nodes}
    assert len(accel) == 5
    x = RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)
    ref = run_compiled(cm, {"x": x}, "cpu")["y"]
    np.testing.assert_array_equal(run_compiled(cm, {"x": x}, "fsim")["y"], ref)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    assert np.abs(ref - want).max() < 0.02
