"""ONNX frontend: every imported graph computes what the original model computes.

Each case builds a small ONNX model, imports it, exports the canonical Graph back to ONNX and
compares both with ``onnx.reference.ReferenceEvaluator`` (the spec's own semantics).
"""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from pyvta.compiler.frontend import (FrontendError, UnsupportedError, export_model,  # noqa: E402
                                     import_model, parse_input_shapes)
from pyvta.compiler.passes import fold_constants, infer_shapes, run_passes  # noqa: E402

RNG = np.random.default_rng(1)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = h.make_graph(nodes, "t", [h.make_tensor_value_info(n, T.FLOAT, s) for n, s in inputs],
                     [h.make_tensor_value_info(n, T.FLOAT, s) for n, s in outputs],
                     [nh.from_array(np.asarray(a), n) for n, a in inits])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _with_output_shapes(model, want):
    """Give the graph outputs the shapes the reference computed (the checker wants a shape)."""
    for vi, w in zip(model.graph.output, want):
        if not vi.type.tensor_type.HasField("shape"):
            vi.type.tensor_type.elem_type = nh.from_array(np.asarray(w)).data_type
            vi.type.tensor_type.shape.SetInParent()
            for d in np.asarray(w).shape:
                vi.type.tensor_type.shape.dim.add().dim_value = d
    return model


def _run(model, feeds, oracle):
    if oracle == "ort":
        ort = pytest.importorskip("onnxruntime")
        return ort.InferenceSession(model.SerializeToString()).run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def _check(model, feeds, input_shapes=None, rtol=1e-5, atol=1e-5, oracle="reference"):
    want = _run(model, feeds, oracle)
    graph = import_model(_with_output_shapes(model, want), input_shapes)
    got = _run(export_model(graph), feeds, oracle)
    for w, g_ in zip(want, got):
        np.testing.assert_allclose(g_, w, rtol=rtol, atol=atol)
    for v in graph.outputs:
        assert v.shape == tuple(np.asarray(want[[o.name for o in graph.outputs].index(v.name)])
                                .shape)
    return graph


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _unary(op, opset=17, shape=(2, 3, 4, 5), **attrs):
    return _model([h.make_node(op, ["x"], ["y"], **attrs)], [("x", shape)], [("y", None)],
                  opset=opset)


# (model, feeds) pairs covering attribute defaults and opset-version dispatch.
CASES = {
    "conv_same_upper": (_model([h.make_node("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER",
                                            strides=[2, 2])],
                               [("x", (1, 3, 7, 7))], [("y", None)], [("w", _x(4, 3, 3, 3))]),
                        {"x": _x(1, 3, 7, 7)}),
    "conv_grouped_bias": (_model([h.make_node("Conv", ["x", "w", "b"], ["y"], group=2,
                                              pads=[1, 0, 1, 0], dilations=[1, 2])],
                                 [("x", (1, 4, 6, 6))], [("y", None)],
                                 [("w", _x(6, 2, 3, 3)), ("b", _x(6))]), {"x": _x(1, 4, 6, 6)}),
    "convtranspose": (_model([h.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2],
                                          output_padding=[1, 1])],
                             [("x", (1, 2, 3, 3))], [("y", None)], [("w", _x(2, 3, 3, 3))]),
                      {"x": _x(1, 2, 3, 3)}),
    "gemm_trans": (_model([h.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, alpha=0.5)],
                          [("x", (2, 6))], [("y", None)], [("w", _x(4, 6)), ("b", _x(4))]),
                   {"x": _x(2, 6)}),
    "maxpool_same": (_unary("MaxPool", kernel_shape=[3, 3], strides=[2, 2],
                            auto_pad="SAME_LOWER"), {"x": _x(2, 3, 4, 5)}),
    "avgpool_ceil": (_unary("AveragePool", kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
                     {"x": _x(2, 3, 4, 5)}),
    "clip_attr_opset10": (_unary("Clip", opset=10, min=-0.5, max=0.5), {"x": _x(2, 3, 4, 5)}),
    "clip_inputs": (_model([h.make_node("Clip", ["x", "", "hi"], ["y"])], [("x", (3, 4))],
                           [("y", None)], [("hi", np.array(0.3, np.float32))]),
                    {"x": _x(3, 4)}),
    "softmax_opset11_axis1": (_unary("Softmax", opset=11, axis=1), {"x": _x(2, 3, 4, 5)}),
    "softmax_default": (_unary("Softmax"), {"x": _x(2, 3, 4, 5)}),
    "hardsigmoid": (_unary("HardSigmoid"), {"x": _x(2, 3, 4, 5)}),
    "hardswish": (_unary("HardSwish"), {"x": _x(2, 3, 4, 5)}),
    "leakyrelu": (_unary("LeakyRelu"), {"x": _x(2, 3, 4, 5)}),
    "gelu_opset20": (_unary("Gelu", opset=20), {"x": _x(2, 3, 4, 5)}),
    "gelu_tanh": (_unary("Gelu", opset=20, approximate="tanh"), {"x": _x(2, 3, 4, 5)}),
    "reducemean_attr": (_unary("ReduceMean", axes=[2, 3]), {"x": _x(2, 3, 4, 5)}),
    "reducemean_opset18": (_model([h.make_node("ReduceMean", ["x", "a"], ["y"], keepdims=0)],
                                  [("x", (2, 3, 4))], [("y", None)],
                                  [("a", np.array([-1], np.int64))], opset=18),
                           {"x": _x(2, 3, 4)}),
    "reducesum_opset11": (_model([h.make_node("ReduceSum", ["x"], ["y"], axes=[1])],
                                 [("x", (2, 3, 4))], [("y", None)], opset=11), {"x": _x(2, 3, 4)}),
    "squeeze_opset11": (_model([h.make_node("Squeeze", ["x"], ["y"], axes=[1])],
                               [("x", (2, 1, 4))], [("y", None)], opset=11), {"x": _x(2, 1, 4)}),
    "split_attr_opset11": (_model([h.make_node("Split", ["x"], ["y", "z"], axis=1, split=[1, 3])],
                                  [("x", (2, 4))], [("y", None), ("z", None)], opset=11),
                           {"x": _x(2, 4)}),
    "split_opset18_num": (_model([h.make_node("Split", ["x"], ["y", "z"], axis=1, num_outputs=2)],
                                 [("x", (2, 5))], [("y", None), ("z", None)], opset=18),
                          {"x": _x(2, 5)}),
    "pad_reflect": (_model([h.make_node("Pad", ["x", "p"], ["y"], mode="reflect")],
                           [("x", (1, 2, 4, 4))], [("y", None)],
                           [("p", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))]),
                    {"x": _x(1, 2, 4, 4)}),
    "resize_nearest": (_model([h.make_node("Resize", ["x", "", "s"], ["y"])],
                              [("x", (1, 2, 3, 3))], [("y", None)],
                              [("s", np.array([1, 1, 2, 2], np.float32))]),
                       {"x": _x(1, 2, 3, 3)}),
    "transpose_default": (_unary("Transpose"), {"x": _x(2, 3, 4, 5)}),
    "slice_attrs_opset9": (_unary("Slice", opset=9, starts=[0, 1], ends=[2, -1], axes=[1, 3]),
                           {"x": _x(2, 3, 4, 5)}),
    "slice_inputs_negative_step": (_model(
        [h.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"])], [("x", (2, 3, 4, 5))],
        [("y", None)], [("s", np.array([-1], np.int64)), ("e", np.array([-100], np.int64)),
                        ("a", np.array([3], np.int64)), ("st", np.array([-2], np.int64))]),
        {"x": _x(2, 3, 4, 5)}),
    "pad_attrs_opset10": (_unary("Pad", opset=10, pads=[0, 0, 1, 1, 0, 0, 1, 1], value=1.5),
                          {"x": _x(2, 3, 4, 5)}),
    "upsample_opset9": (_model([h.make_node("Upsample", ["x", "s"], ["y"])],
                               [("x", (1, 2, 3, 3))], [("y", None)],
                               [("s", np.array([1, 1, 2, 3], np.float32))], opset=9),
                        {"x": _x(1, 2, 3, 3)}),
    "dropout_ratio_opset10": (_unary("Dropout", opset=10, ratio=0.3), {"x": _x(2, 3, 4, 5)}),
    "flatten": (_unary("Flatten", axis=2), {"x": _x(2, 3, 4, 5)}),
    "layernorm": (_model([h.make_node("LayerNormalization", ["x", "g", "b"], ["y"])],
                         [("x", (2, 3, 8))], [("y", None)], [("g", _x(8)), ("b", _x(8))]),
                  {"x": _x(2, 3, 8)}),
    "dropout": (_unary("Dropout"), {"x": _x(2, 3, 4, 5)}),
    "batchnorm_alone": (_model([h.make_node("BatchNormalization", ["x", "g", "b", "m", "v"],
                                            ["y"])],
                               [("x", (2, 3, 4, 4))], [("y", None)],
                               [("g", _x(3)), ("b", _x(3)), ("m", _x(3)),
                                ("v", np.abs(_x(3)) + 0.1)]), {"x": _x(2, 3, 4, 4)}),
}


#: Cases checked against onnxruntime: onnx.reference 1.23 gets MaxPool SAME_LOWER's output
#: size wrong ((2, 2) instead of ceil(5 / 2) = 3 columns) and applies opset-13 Softmax
#: semantics to opset-11 models (no coercion to 2-D).
ORT_CASES = {"maxpool_same", "softmax_opset11_axis1"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_reference(name):
    model, feeds = CASES[name]
    _check(model, feeds, oracle="ort" if name in ORT_CASES else "reference")


def _torch_like_model(opset=13):
    """Conv + BN + Relu, then a PyTorch-style flatten built from shape arithmetic."""
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             h.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"]),
             h.make_node("Relu", ["bn"], ["r"]),
             h.make_node("Shape", ["r"], ["s"]),
             h.make_node("Constant", [], ["i0"], value=nh.from_array(np.array(0, np.int64))),
             h.make_node("Gather", ["s", "i0"], ["n"]),
             h.make_node("Constant", [], ["ax"], value=nh.from_array(np.array([0], np.int64))),
             h.make_node("Unsqueeze", ["n", "ax"], ["nu"]),
             h.make_node("Constant", [], ["m1"], value=nh.from_array(np.array([-1], np.int64))),
             h.make_node("Concat", ["nu", "m1"], ["shp"], axis=0),
             h.make_node("Cast", ["shp"], ["shp64"], to=T.INT64),
             h.make_node("Reshape", ["r", "shp64"], ["f"]),
             h.make_node("MatMul", ["f", "fw"], ["y"]),
             h.make_node("Sigmoid", ["s"], ["dead"], name="unused_branch") if False else
             h.make_node("Identity", ["y"], ["z"])]
    inits = [("w", _x(4, 2, 3, 3)), ("g", _x(4)), ("b", _x(4)), ("m", _x(4)),
             ("v", np.abs(_x(4)) + 0.1), ("fw", _x(4 * 5 * 5, 3))]
    return _model(nodes, [("x", ("N", 2, 5, 5))], [("z", ("N", 3))], inits, opset=opset)


def test_shape_arithmetic_folded_and_bn_folded():
    model = _torch_like_model()
    x = _x(3, 2, 5, 5)
    # onnxruntime as the oracle: onnx.reference 1.23's opset-13 BatchNormalization is off.
    graph = _check(model, {"x": x}, {"x": (3, 2, 5, 5)}, rtol=1e-4, atol=1e-4, oracle="ort")
    ops = [n.op for n in graph.nodes]
    assert ops == ["Conv", "Relu", "Reshape", "MatMul", "Identity"]
    assert graph.values["f"].shape == (3, 100)
    # Every value has a static shape and the passes keep the graph valid.
    run_passes(graph, [fold_constants, infer_shapes])


def test_dynamic_dim_unset_is_an_error():
    with pytest.raises(FrontendError, match=r"input 'x' dim 0 \('N'\) is dynamic"):
        import_model(_torch_like_model())


def test_input_shape_errors():
    with pytest.raises(FrontendError, match="not a model input"):
        import_model(_torch_like_model(), {"y": (1, 2, 5, 5)})
    with pytest.raises(FrontendError, match="model fixes it to 2"):
        import_model(_torch_like_model(), {"x": (1, 3, 5, 5)})
    with pytest.raises(FrontendError, match="rank 4"):
        import_model(_torch_like_model(), {"x": (1, 2, 5)})
    assert parse_input_shapes(["x=1,3,224,224"]) == {"x": (1, 3, 224, 224)}
    with pytest.raises(FrontendError, match="NAME=D0"):
        parse_input_shapes(["1,2,3"])
    with pytest.raises(FrontendError, match="positive"):
        parse_input_shapes(["x=1,0"])


def test_unsupported_op_names_node_and_lists_supported():
    m = _model([h.make_node("Einsum", ["x", "x"], ["y"], name="my_einsum", equation="ij,ij->ij")],
               [("x", (2, 2))], [("y", ("d",))])
    with pytest.raises(UnsupportedError, match=r"'my_einsum': operator 'Einsum'.*Conv"):
        import_model(m)


def test_unsupported_attribute_names_node():
    m = _model([h.make_node("Resize", ["x", "", "s"], ["y"], name="rs", antialias=1)],
               [("x", (1, 1, 2, 2))], [("y", ("d",))], [("s", np.ones(4, np.float32))], opset=18)
    with pytest.raises(UnsupportedError, match=r"'rs' \(Resize\).*antialias"):
        import_model(m)
    m = _model([h.make_node("Relu", ["x"], ["y"], name="r1", bogus=1)], [("x", (2,))],
               [("y", ("d",))])
    with pytest.raises((UnsupportedError, FrontendError), match="bogus|malformed"):
        import_model(m)


def test_malformed_and_truncated_files(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(_torch_like_model().SerializeToString()[:200])
    with pytest.raises(FrontendError, match="not a readable ONNX model|malformed"):
        import_model(path, {"x": (1, 2, 5, 5)})
    with pytest.raises(FrontendError, match="does not exist"):
        import_model(tmp_path / "missing.onnx")
    bad = _model([h.make_node("Relu", ["nope"], ["y"])], [("x", (2,))], [("y", ("d",))])
    with pytest.raises(FrontendError, match="malformed"):
        import_model(bad)
    old = _unary("Relu", opset=6)
    with pytest.raises(FrontendError, match="opset 6"):
        import_model(old)


def test_dead_code_removed():
    m = _model([h.make_node("Relu", ["x"], ["y"]), h.make_node("Sigmoid", ["x"], ["dead"])],
               [("x", (2, 3))], [("y", (2, 3))])
    graph = import_model(m)
    assert [n.op for n in graph.nodes] == ["Relu"]
    assert "dead" not in graph.values
