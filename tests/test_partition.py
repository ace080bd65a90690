"""Partitioner: Accel nodes with int8 boundaries, CPU fallback, run-merging schedule."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from pyvta.compiler.frontend import import_model  # noqa: E402
from pyvta.compiler.partition import ACCEL_OP, partition  # noqa: E402
from pyvta.compiler.passes import QUANTIZE_PASSES, run_passes  # noqa: E402
from pyvta.compiler.quantize import QUANT_DOMAIN, quantize, run_quantized  # noqa: E402
from pyvta.runtime.cpu.numpy_ops import run_node  # noqa: E402

RNG = np.random.default_rng(3)


def _w(*shape):
    return (RNG.standard_normal(shape) * 0.3).astype(np.float32)


def _model(nodes, inits, out_shape):
    g = h.make_graph(nodes, "m", [h.make_tensor_value_info("x", T.FLOAT, [1, 4, 6, 6])],
                     [h.make_tensor_value_info("y", T.FLOAT, out_shape)],
                     [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def cpu_in_the_middle():
    """conv-relu | sigmoid (CPU) | conv-relu, maxpool: two partitions."""
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("Relu", ["c1"], ["a1"], name="relu1"),
             h.make_node("Sigmoid", ["a1"], ["s"], name="sig"),
             h.make_node("Conv", ["s", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             h.make_node("Relu", ["c2"], ["a2"], name="relu2"),
             h.make_node("MaxPool", ["a2"], ["y"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool")]
    return _model(nodes, {"w1": _w(4, 4, 3, 3), "w2": _w(4, 4, 3, 3)}, [1, 4, 3, 3])


def independent_branches():
    """Two accelerator chains and a CPU chain that do not depend on each other, interleaved in
    the file: a good schedule runs the CPU chain first and needs a single partition."""
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], name="conv1"),
             h.make_node("Sigmoid", ["x"], ["s"], name="sig"),
             h.make_node("Conv", ["c1", "w2"], ["c2"], name="conv2"),
             h.make_node("Tanh", ["s"], ["t"], name="tanh"),
             h.make_node("Conv", ["t", "w1"], ["c3"], name="conv3"),
             h.make_node("Add", ["c2", "c3"], ["y"], name="add")]
    return _model(nodes, {"w1": _w(4, 4, 1, 1), "w2": _w(4, 4, 1, 1)}, [1, 4, 6, 6])


def _quantized(model):
    graph = run_passes(import_model(model), QUANTIZE_PASSES)
    calib = {"x": RNG.standard_normal((8, 1, 4, 6, 6)).astype(np.float32)}
    return quantize(graph, calib, report=False).graph


def _run(pgraph, parts, x):
    """Execute a partitioned graph: Accel nodes by their ops' references."""
    env = dict(pgraph.initializers)
    env["x"] = x
    for n in pgraph.nodes:
        if n.op == ACCEL_OP:
            for op in parts[n.attrs["program"]].ops:
                env[op.output] = op.qop.reference(*[env[i] for i in op.inputs])
        else:
            env.update(zip(n.outputs, run_node(n, [env[i] if i else None for i in n.inputs])))
    return env["y"]


def test_cpu_op_splits_partitions_with_int8_boundaries():
    q = _quantized(cpu_in_the_middle())
    pg, parts = partition(q)
    assert [n.op for n in pg.nodes] == ["QuantizeLinear", ACCEL_OP, "DequantizeLinear",
                                        "Sigmoid", "QuantizeLinear", ACCEL_OP,
                                        "DequantizeLinear"]
    assert [[o.name for o in p.ops] for p in parts] == [["conv1"], ["conv2", "pool"]]
    for n in pg.nodes:
        if n.op == ACCEL_OP:
            assert n.domain == QUANT_DOMAIN and set(n.attrs) == {"program"}
            assert all(pg.values[v].dtype == np.int8 for v in n.inputs + n.outputs)
    # Relu fused into the convolutions: its node name is kept for the instruction map.
    conv1 = next(n for n in q.nodes if n.name == "conv1")
    assert conv1.attrs["onnx_nodes"] == ["conv1", "relu1"]
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(_run(pg, parts, x), run_quantized(q, {"x": x})["y"])


def test_schedule_merges_independent_accelerator_nodes():
    q = _quantized(independent_branches())
    pg, parts = partition(q)
    accel = [n for n in pg.nodes if n.op == ACCEL_OP]
    # One accelerator run although the file interleaves the CPU chain with it.
    assert [o.name for o in parts[0].ops] == ["conv1", "conv2", "conv3", "add"]
    assert len(accel) == 1
    assert [n.op for n in pg.nodes].index(ACCEL_OP) > [n.op for n in pg.nodes].index("Tanh")
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(_run(pg, parts, x), run_quantized(q, {"x": x})["y"])


def test_excluded_operator_falls_back_to_float_cpu_nodes():
    q = _quantized(cpu_in_the_middle())
    pg, parts = partition(q, exclude={"pool"})
    # The float MaxPool computes the graph output itself: no int8 round trip after it.
    assert [n.op for n in pg.nodes] == ["QuantizeLinear", ACCEL_OP, "DequantizeLinear",
                                        "Sigmoid", "QuantizeLinear", ACCEL_OP,
                                        "DequantizeLinear", "MaxPool"]
    assert all(o.name != "pool" for p in parts for o in p.ops)
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    # Max pooling commutes with (de)quantization at one scale: results stay identical.
    np.testing.assert_array_equal(_run(pg, parts, x), run_quantized(q, {"x": x})["y"])


def test_excluding_the_first_layer_feeds_it_float():
    q = _quantized(cpu_in_the_middle())
    pg, parts = partition(q, exclude={"conv1", "conv2"})
    assert [n.op for n in pg.nodes] == ["Conv", "Relu", "Sigmoid", "Conv", "Relu",
                                        "QuantizeLinear", ACCEL_OP, "DequantizeLinear"]
    assert [[o.name for o in p.ops] for p in parts] == [["pool"]]


def test_partition_does_not_modify_its_input():
    q = _quantized(cpu_in_the_middle())
    before = [(n.op, n.name, list(n.inputs), list(n.outputs)) for n in q.nodes]
    partition(q, exclude={"conv2"})
    assert [(n.op, n.name, list(n.inputs), list(n.outputs)) for n in q.nodes] == before


def test_cost_rule_keeps_a_lone_pooling_run_on_the_cpu():
    """Sigmoid -> MaxPool -> Tanh: pooling alone between float CPU ops is not worth a launch."""
    nodes = [h.make_node("Sigmoid", ["x"], ["s"], name="sig"),
             h.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                         name="pool"),
             h.make_node("Tanh", ["p"], ["y"], name="tanh")]
    q = _quantized(_model(nodes, {}, [1, 4, 3, 3]))
    pg, parts = partition(q)
    assert parts == [] and [n.op for n in pg.nodes] == ["Sigmoid", "MaxPool", "Tanh"]
    pg, parts = partition(q, cost=False)
    assert [[o.name for o in p.ops] for p in parts] == [["pool"]]


def test_all_cpu_fallback_is_a_valid_onnx_model():
    """With every quantized op excluded, the partitioned graph is plain ONNX (opset 17):
    the checker accepts it and onnxruntime runs it."""
    ort = pytest.importorskip("onnxruntime")
    from pyvta.compiler.frontend import export_model
    q = _quantized(cpu_in_the_middle())
    pg, parts = partition(q, exclude={n.name for n in q.nodes if n.domain == QUANT_DOMAIN})
    assert parts == []
    model = export_model(pg)
    onnx.checker.check_model(model, full_check=True)
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, _run(pg, parts, x), rtol=1e-5, atol=1e-6)


def test_relu_after_maxpool_fuses_into_the_conv():
    """Conv -> MaxPool -> Relu: the Relu moves before the pooling and into the conv."""
    ort = pytest.importorskip("onnxruntime")
    from pyvta.compiler.frontend import export_model
    nodes = [h.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             h.make_node("MaxPool", ["c1"], ["p"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], name="pool"),
             h.make_node("Relu", ["p"], ["y"], name="relu")]
    model = _model(nodes, {"w1": _w(4, 4, 3, 3)}, [1, 4, 3, 3])
    graph = run_passes(import_model(model), QUANTIZE_PASSES)
    assert [n.op for n in graph.nodes] == ["Conv", "Relu", "MaxPool"]
    x = RNG.standard_normal((1, 4, 6, 6)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    got = ort.InferenceSession(export_model(graph).SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    q = _quantized(model)
    assert [n.op for n in q.nodes if n.domain == QUANT_DOMAIN] == ["QConv2d", "QMaxPool"]
    assert next(n for n in q.nodes if n.op == "QConv2d").attrs["qop"].requant.lo == 0
