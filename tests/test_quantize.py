"""Quantizer: requantization never overflows, fused activations, per-layer error, bad input."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T, helper as h, numpy_helper as nh  # noqa: E402

from pyvta.compiler import qops  # noqa: E402
from pyvta.compiler.calibrate import (CalibrationError, activation_ranges,  # noqa: E402
                                      entropy_threshold, load_calibration, random_calibration,
                                      run_float)
from pyvta.compiler.frontend import import_model  # noqa: E402
from pyvta.compiler.passes import QUANTIZE_PASSES, run_passes  # noqa: E402
from pyvta.compiler.quantize import (QUANT_DOMAIN, QuantizeError, choose_requant,  # noqa: E402
                                     quantize, run_quantized)

RNG = np.random.default_rng(7)


def _f(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def small_cnn(act="Relu"):
    """conv-act, maxpool, conv + residual add + relu, global avg pool, flatten, gemm."""
    act_nodes = {"Relu": [h.make_node("Relu", ["c1"], ["a1"])],
                 "Relu6": [h.make_node("Clip", ["c1", "zero", "six"], ["a1"])]}[act]
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), *act_nodes,
             h.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             h.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             h.make_node("Add", ["c2", "p1"], ["s2"]),
             h.make_node("Relu", ["s2"], ["a2"]),
             h.make_node("GlobalAveragePool", ["a2"], ["g"]),
             h.make_node("Flatten", ["g"], ["f"]),
             h.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = {"w1": _f(8, 3, 3, 3, scale=0.3), "b1": _f(8, scale=0.1),
             "w2": _f(8, 8, 3, 3, scale=0.2), "b2": _f(8, scale=0.1),
             "fw": _f(5, 8), "fb": _f(5), "zero": np.array(0, np.float32),
             "six": np.array(6, np.float32)}
    g = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 5])],
                     [nh.from_array(v, k) for k, v in inits.items()])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _graph(model):
    return run_passes(import_model(model), QUANTIZE_PASSES)


@pytest.fixture(scope="module")
def cnn():
    graph = _graph(small_cnn())
    calib = {"x": RNG.standard_normal((24, 1, 3, 8, 8)).astype(np.float32)}
    return graph, calib


@pytest.mark.parametrize("mode", ["per-channel", "pow2"])
def test_quantized_model_tracks_float(cnn, mode):
    graph, calib = cnn
    qm = quantize(graph, calib, mode=mode)
    ops = [n.op for n in qm.graph.nodes if n.domain == QUANT_DOMAIN]
    assert ops == ["QConv2d", "QMaxPool", "QConv2d", "QAdd", "QAvgPool", "QConv2d"]
    # Every layer keeps a healthy signal-to-quantization-noise ratio.
    floor = 25 if mode == "per-channel" else 15
    for r in qm.report:
        assert r.sqnr_db > floor, r
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = run_float(graph, {"x": x})["y"]
    got = run_quantized(qm.graph, {"x": x})["y"]
    cos = float((want * got).sum() / np.linalg.norm(want) / np.linalg.norm(got))
    assert cos > 0.99


def test_pow2_mode_uses_shifts_only(cnn):
    graph, calib = cnn
    qm = quantize(graph, calib, mode="pow2", report=False)
    for n in qm.graph.nodes:
        rq = getattr(n.attrs.get("qop"), "requant", None)
        if rq is not None:
            assert np.all(rq.mult == 1) or int(np.log2(int(rq.mult.max()))) == np.log2(
                int(rq.mult.max()))
        if n.domain == QUANT_DOMAIN:
            s = n.attrs["scale"]
            assert s == 2.0 ** np.round(np.log2(s))


def test_relu6_fused_into_clip():
    graph = _graph(small_cnn("Relu6"))
    calib = {"x": RNG.standard_normal((8, 1, 3, 8, 8)).astype(np.float32) * 4}
    qm = quantize(graph, calib, report=False)
    conv = next(n for n in qm.graph.nodes if n.op == "QConv2d")
    rq = conv.attrs["qop"].requant
    assert rq.lo == 0
    assert rq.hi == min(127, round(6 / conv.attrs["scale"]))
    assert conv.attrs["onnx_nodes"][1].startswith("Clip")


@pytest.mark.parametrize("seed", range(20))
def test_choose_requant_never_overflows_and_is_accurate(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(1, 9))
    # Per-channel multipliers within 100x of each other (weight scales of one layer), and
    # worst-case outputs (bound * m) up to 2**14: far beyond any calibrated range.
    m = 10.0 ** (rng.uniform(-5, 0) + rng.uniform(0, 2, c))
    bound = (rng.uniform(0.01, 1, c) * 2 ** 14 / m.max()).astype(np.int64) + 1
    rq, adjust = choose_requant(m, bound)
    # Worst case accumulators (the bias adjustment included) stay within int32 everywhere.
    for acc in (bound + adjust, -bound + adjust):
        y = (acc.astype(np.int64) >> rq.pre_shift) * rq.mult.astype(np.int64)
        y += (1 << (rq.shift - 1)) if rq.shift else 0
        assert np.all(np.abs(y) < 2 ** 31)
    # In the useful range the integer result is within one step of acc * m.
    out = rng.uniform(-127, 127, (64, c))
    acc = np.clip(np.round(out / m), -bound, bound).astype(np.int64)
    got = qops.requantize(np.clip(acc + adjust, -2**31, 2**31 - 1), rq, channel_axis=1)
    assert np.abs(got.astype(np.int64) - np.clip(np.round(acc * m), -128, 127)).max() <= 1


def test_bad_mode_and_method(cnn):
    graph, calib = cnn
    with pytest.raises(QuantizeError, match="mode 'int4' is unknown"):
        quantize(graph, calib, mode="int4")
    with pytest.raises(CalibrationError, match="method 'kl' is unknown"):
        activation_ranges(graph, calib, "kl")


def test_percentile_is_below_minmax(cnn):
    graph, calib = cnn
    mm = activation_ranges(graph, calib, "minmax")
    pc = activation_ranges(graph, calib, "percentile")
    assert all(pc[k] <= mm[k] + 1e-6 for k in mm)
    assert pc["x"] < mm["x"]


def test_load_calibration_forms_and_errors(cnn, tmp_path):
    graph, _ = cnn
    batchless = RNG.standard_normal((5, 3, 8, 8)).astype(np.float32)   # samples of the batch
    assert load_calibration({"x": batchless}, graph)["x"].shape == (5, 1, 3, 8, 8)
    np.savez(tmp_path / "c.npz", x=batchless)
    assert load_calibration(tmp_path / "c.npz", graph)["x"].shape == (5, 1, 3, 8, 8)
    folder = tmp_path / "npy"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"s{i}.npy", batchless[i])
    assert load_calibration(folder, graph)["x"].shape == (3, 1, 3, 8, 8)
    with pytest.raises(CalibrationError, match="no array for model input 'x'"):
        load_calibration({"y": batchless}, graph)
    with pytest.raises(CalibrationError, match=r"shape \(5, 3, 4, 4\)"):
        load_calibration({"x": batchless[:, :, :4, :4]}, graph)
    bad = batchless.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(CalibrationError, match="NaN"):
        load_calibration({"x": bad}, graph)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "missing.npz", graph)


def test_no_calibration_data_warns_loudly(cnn, capsys):
    graph, _ = cnn
    data = random_calibration(graph, samples=4)
    assert data["x"].shape == (4, 1, 3, 8, 8)
    assert "WARNING: no calibration data" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(10))
def test_choose_requant_no_overflow_even_for_extreme_ranges(seed):
    rng = np.random.default_rng(100 + seed)
    c = int(rng.integers(1, 9))
    m = 10.0 ** rng.uniform(-6, 1, c)
    # Any bound whose real output (bound * m) itself fits int32 with a bit to spare.
    bound = np.minimum(rng.integers(1, 1 << 30, c), (2 ** 30 / m).astype(np.int64))
    rq, adjust = choose_requant(m, bound)
    for acc in (bound + adjust, -bound + adjust, np.zeros(c, np.int64)):
        y = (acc.astype(np.int64) >> rq.pre_shift) * rq.mult.astype(np.int64)
        y += (1 << (rq.shift - 1)) if rq.shift else 0
        assert np.all(np.abs(y) < 2 ** 31)


def test_choose_requant_rejects_impossible_output_range():
    with pytest.raises(QuantizeError, match="no requantization avoids int32 overflow"):
        choose_requant([4.0], [1 << 30])


def test_entropy_threshold_ignores_outliers(cnn):
    rng = np.random.default_rng(0)
    x = np.abs(np.concatenate([rng.standard_normal(200_000), [50.0, -60.0]]))
    t = entropy_threshold(x, float(x.max()))
    assert 2.5 < t < 10            # near the bulk of the Gaussian, far below the outlier
    graph, calib = cnn
    ent = activation_ranges(graph, calib, "entropy")
    mm = activation_ranges(graph, calib, "minmax")
    assert all(0 < ent[k] <= mm[k] + 1e-6 for k in mm if mm[k] > 0)


def test_pow2_requant_never_wraps():
    from pyvta.compiler.quantize import _requant
    # Output scale 8x finer than the accumulator's and an accumulator bound of 2**29: the
    # scaled result cannot be represented in int32; an error, never a silent wrap-around.
    with pytest.raises(QuantizeError, match="overflow"):
        _requant("pow2", np.array([8.0]), np.array([1 << 29]), -128, 127)
    rq, _ = _requant("pow2", np.array([8.0]), np.array([1 << 20]), -128, 127)
    assert int(rq.mult) == 8 and rq.shift == 0
    rq, _ = _requant("pow2", np.array([2.0 ** -5]), np.array([1000]), -128, 127)
    assert int(rq.mult) == 1 and rq.shift == 5 and rq.pre_shift == 0
