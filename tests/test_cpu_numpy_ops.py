"""The numpy CPU operators against onnx's reference implementation, one node at a time."""

import numpy as np
import pytest
from onnx import helper, TensorProto
from onnx.reference import ReferenceEvaluator

from pyvta.compiler.ir import Node
from pyvta.runtime.cpu.numpy_ops import UnsupportedOpError, run_node

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 8, 9, 7)).astype(np.float32)

CASES = [
    ("Relu", [X], {}), ("Sigmoid", [X], {}), ("Tanh", [X], {}), ("Erf", [X], {}),
    ("HardSigmoid", [X], {"alpha": 0.3, "beta": 0.4}), ("HardSwish", [X], {}),
    ("LeakyRelu", [X], {"alpha": 0.2}), ("Exp", [X], {}),
    ("Add", [X, X[0, :, :1, :]], {}), ("Div", [X, np.float32(3.0)], {}),
    ("Softmax", [X], {"axis": 1}), ("LayerNormalization",
                                    [X, np.ones(7, np.float32), np.zeros(7, np.float32)], {}),
    ("MaxPool", [X], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("MaxPool", [X], {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    ("AveragePool", [X], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ("AveragePool", [X], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                          "count_include_pad": 1}),
    ("GlobalAveragePool", [X], {}),
    ("Conv", [X, rng.standard_normal((4, 4, 3, 3)).astype(np.float32),
              rng.standard_normal(4).astype(np.float32)],
     {"group": 2, "strides": [2, 1], "pads": [1, 0, 1, 2]}),
    ("Transpose", [X], {"perm": [0, 2, 3, 1]}),
    ("Resize", [X, None, np.array([1, 1, 2, 2], np.float32)], {"mode": "nearest"}),
    ("Resize", [X, None, np.array([1, 1, 2, 1.5], np.float32)], {"mode": "linear"}),
    ("QuantizeLinear", [X, np.float32(0.02), np.int8(0)], {}),
    ("Pad", [X, np.array([0, 0, 1, 2, 0, 0, 3, 0], np.int64)], {"mode": "reflect"}),
    ("Slice", [X, np.array([1, -1]), np.array([7, -9]), np.array([1, 3]),
               np.array([2, -2])], {}),
]


@pytest.mark.parametrize("op,inputs,attrs", CASES, ids=[c[0] for c in CASES])
def test_against_onnx_reference(op, inputs, attrs):
    names = [f"i{k}" if a is not None else "" for k, a in enumerate(inputs)]
    node = helper.make_node(op, names, ["y"], **attrs)
    feeds = {n: np.asarray(a) for n, a in zip(names, inputs) if n}
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in feeds.items()]
    graph = helper.make_graph([node], "g", vis,
                              [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = run_node(Node(op, "n", names, ["y"], dict(attrs)),
                   [np.asarray(a) if a is not None else None for a in inputs])[0]
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unknown_op_is_named():
    with pytest.raises(UnsupportedOpError, match="FancyOp"):
        run_node(Node("FancyOp", "n", ["x"], ["y"]), [X])
