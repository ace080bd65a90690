"""The whole pipeline: ONNX -> CompiledModel; the int8 reference and the functional simulator
agree bit for bit; the digits example keeps its float accuracy; ``pyvta compile`` works."""

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from pyvta.__main__ import main  # noqa: E402
from pyvta.compiler import artifact  # noqa: E402
from pyvta.compiler.calibrate import run_float  # noqa: E402
from pyvta.compiler.compile import compile_model, run_compiled, summary  # noqa: E402
from pyvta.compiler.frontend import import_model  # noqa: E402

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
RNG = np.random.default_rng(11)


def mixed_model():
    """Strided conv + Relu6, depthwise, grouped 1x1, avg pool, Flatten (CPU), Gemm, MatMul."""
    def w(*s):
        return (RNG.standard_normal(s) * 0.3).astype(np.float32)
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2],
                         name="conv_s2"),
             h.make_node("Clip", ["c1", "lo", "hi"], ["a1"], name="relu6"),
             h.make_node("Conv", ["a1", "wd"], ["c2"], pads=[1, 1, 1, 1], group=8, name="dw"),
             h.make_node("Relu", ["c2"], ["a2"], name="r2"),
             h.make_node("Conv", ["a2", "wg"], ["c3"], group=2, name="grouped"),
             h.make_node("AveragePool", ["c3"], ["p"], kernel_shape=[2, 2], strides=[2, 2],
                         name="avg"),
             h.make_node("Flatten", ["p"], ["f"], name="flat"),
             h.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1, name="fc"),
             h.make_node("Relu", ["g"], ["gr"], name="fcrelu"),
             h.make_node("MatMul", ["gr", "mw"], ["y"], name="mm")]
    inits = {"w1": w(8, 3, 3, 3), "b1": w(8), "lo": np.array(0, np.float32),
             "hi": np.array(6, np.float32), "wd": w(8, 1, 3, 3), "wg": w(8, 4, 1, 1),
             "fw": w(20, 8 * 2 * 2), "fb": w(20), "mw": w(20, 7)}
    g = h.make_graph(nodes, "mixed", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, ["N", 7])],
                     [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture(scope="module")
def digits():
    return compile_model(DIGITS / "digits.onnx", "pynq-z1", DIGITS / "calib.npz")


def test_digits_fsim_bit_identical_to_int8_reference(digits):
    x = np.load(DIGITS / "test.npz")["x"]
    for i in range(4):
        feeds = {"x": x[i:i + 1]}
        np.testing.assert_array_equal(run_compiled(digits, feeds, "fsim")["logits"],
                                      run_compiled(digits, feeds, "cpu")["logits"])


def test_digits_int8_accuracy_within_half_a_point_of_float(digits):
    test = np.load(DIGITS / "test.npz")
    x, y = test["x"], test["y"]
    graph = import_model(DIGITS / "digits.onnx")
    f_pred = np.array([run_float(graph, {"x": x[i:i + 1]})["logits"].argmax()
                       for i in range(len(x))])
    q_pred = np.array([run_compiled(digits, {"x": x[i:i + 1]})["logits"].argmax()
                       for i in range(len(x))])
    f_acc, q_acc = (f_pred == y).mean(), (q_pred == y).mean()
    assert f_acc > 0.95
    assert q_acc >= f_acc - 0.005, (f_acc, q_acc)
    assert (f_pred == q_pred).mean() > 0.98


def test_digits_summary_and_meta(digits):
    text = summary(digits)
    assert "partitions: 1; operators on the accelerator: 8" in text
    assert "estimated accelerator cycles" in text
    assert [p["ops"] for p in digits.meta["partitions"]][0][0] == "/conv1/Conv"
    assert all(r["sqnr_db"] > 25 for r in digits.meta["report"])


@pytest.mark.parametrize("config,quant", [("tiny", "pow2"), ("pynq-z1", "per-channel")])
def test_mixed_model_fsim_matches_reference(config, quant):
    calib = {"x": RNG.standard_normal((12, 3, 8, 8)).astype(np.float32)}   # batch items
    model = mixed_model()
    cm = compile_model(model, config, calib, input_shapes={"x": (1, 3, 8, 8)}, quant=quant)
    assert len(cm.programs) == 2            # Flatten of a 2x2 map runs on the CPU between,
    assert [n.op for n in cm.graph.nodes] == ["QuantizeLinear", "Accel", "Flatten", "Accel",
                                              "DequantizeLinear"]   # on int8 values
    assert cm.graph.values[cm.graph.nodes[2].outputs[0]].dtype == np.int8
    assert cm.meta["cpu_fallback"] == []
    graph = import_model(model, {"x": (1, 3, 8, 8)})
    for _ in range(3):
        x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
        ref = run_compiled(cm, {"x": x}, "cpu")["y"]
        np.testing.assert_array_equal(run_compiled(cm, {"x": x}, "fsim")["y"], ref)
        want = run_float(graph, {"x": x})["y"]
        assert float((want * ref).sum() / np.linalg.norm(want) / np.linalg.norm(ref)) > 0.98


def test_cli_compile_digits(tmp_path, capsys):
    out = tmp_path / "digits.pyvta"
    rc = main(["compile", str(DIGITS / "digits.onnx"), "--calib", str(DIGITS / "calib.npz"),
               "-o", str(out), "--verify", "2"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "operators on the accelerator: 8" in captured.out
    assert "fsim == int8 reference on 2/2 outputs" in captured.out
    assert "lower: partition 0 op 1/8 /conv1/Conv" in captured.err   # progress on stderr
    assert artifact.load(out, "pynq-z1").meta["quantization"]["mode"] == "per-channel"


def test_cli_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "mixed.onnx"
    onnx.save(mixed_model(), str(path))
    assert main(["compile", str(path), "-o", str(tmp_path / "m.pyvta"), "-q"]) == 1
    assert "input 'x' dim 0 ('N') is dynamic" in capsys.readouterr().err
    assert main(["compile", str(path), "--input-shape", "x=1,3,8,8", "--calib",
                 str(DIGITS / "calib.npz"), "-q"]) == 1
    assert "calibration input 'x' has shape" in capsys.readouterr().err
    bad = h.make_model(h.make_graph(
        [h.make_node("Einsum", ["x", "x"], ["y"], name="ein", equation="i,i->i")], "b",
        [h.make_tensor_value_info("x", T.FLOAT, [4])],
        [h.make_tensor_value_info("y", T.FLOAT, [4])]),
        opset_imports=[h.make_opsetid("", 17)])
    bad.ir_version = 8
    onnx.save(bad, str(tmp_path / "bad.onnx"))
    assert main(["compile", str(tmp_path / "bad.onnx"), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pyvta: error: node 'ein': operator 'Einsum' is not supported")


def test_runtime_sessions_agree_with_pipeline_reference(digits, tmp_path):
    runtime = pytest.importorskip("pyvta.runtime")
    path = artifact.save(tmp_path / "d.pyvta", digits)
    x = np.load(DIGITS / "test.npz")["x"]
    for target in ("cpu", "fsim"):
        session = runtime.load(path, target=target)
        for i in range(2):
            feeds = {"x": x[i:i + 1]}
            np.testing.assert_array_equal(session.run(feeds)["logits"],
                                          run_compiled(digits, feeds, "cpu")["logits"])


def test_two_inputs_two_outputs(tmp_path):
    """Two inputs (each quantized at its own scale), a shared residual add, two outputs (one
    int8 partition output read twice); calibration from a folder of NAME.npy files."""
    def w(*s):
        return (RNG.standard_normal(s) * 0.3).astype(np.float32)
    nodes = [h.make_node("Conv", ["a", "wa"], ["ca"], pads=[1, 1, 1, 1], name="conv_a"),
             h.make_node("Conv", ["b", "wb"], ["cb"], pads=[1, 1, 1, 1], name="conv_b"),
             h.make_node("Add", ["ca", "cb"], ["s"], name="add"),
             h.make_node("Relu", ["s"], ["y1"], name="relu"),
             h.make_node("GlobalAveragePool", ["y1"], ["y2"], name="gap")]
    g = h.make_graph(nodes, "two", [h.make_tensor_value_info("a", T.FLOAT, [1, 4, 6, 6]),
                                    h.make_tensor_value_info("b", T.FLOAT, [1, 2, 6, 6])],
                     [h.make_tensor_value_info("y1", T.FLOAT, [1, 8, 6, 6]),
                      h.make_tensor_value_info("y2", T.FLOAT, [1, 8, 1, 1])],
                     [nh.from_array(w(8, 4, 3, 3), "wa"), nh.from_array(w(8, 2, 3, 3), "wb")])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    model.ir_version = 7
    calib = tmp_path / "calib"
    calib.mkdir()
    np.save(calib / "a.npy", RNG.standard_normal((6, 4, 6, 6)).astype(np.float32))
    np.save(calib / "b.npy", 3 * RNG.standard_normal((6, 2, 6, 6)).astype(np.float32))
    cm = compile_model(model, "tiny", calib)
    assert len(cm.programs) == 1
    assert cm.meta["quantization"]["scales"]["b"] > 2 * cm.meta["quantization"]["scales"]["a"]
    graph = import_model(model)
    feeds = {"a": RNG.standard_normal((1, 4, 6, 6)).astype(np.float32),
             "b": 3 * RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)}
    ref = run_compiled(cm, feeds, "cpu")
    sim = run_compiled(cm, feeds, "fsim")
    want = run_float(graph, feeds)
    for name in ("y1", "y2"):
        np.testing.assert_array_equal(sim[name], ref[name])
        assert np.abs(ref[name] - want[name]).max() < 0.1 * np.abs(want[name]).max()
