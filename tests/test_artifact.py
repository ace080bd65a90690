"""The .pyvta artifact: round trip, and a clear ArtifactError for every kind of bad file."""

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
from pyvta.compiler import artifact  # noqa: E402
from pyvta.compiler.artifact import ArtifactError  # noqa: E402
from pyvta.compiler.compile import compile_model, run_compiled  # noqa: E402

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cm = compile_model(DIGITS / "digits.onnx", "pynq-z1", DIGITS / "calib.npz")
    path = tmp_path_factory.mktemp("art") / "digits.pyvta"
    artifact.save(path, cm)
    return cm, path


def _rewrite(src: Path, dst: Path, edit_manifest=None, drop=None, fix_checksums=True):
    with zipfile.ZipFile(src) as z:
        data = {i.filename: z.read(i) for i in z.infolist()}
    if edit_manifest:
        manifest = json.loads(data["manifest.json"])
        edit_manifest(manifest)
        data["manifest.json"] = json.dumps(manifest).encode()
    if drop:
        del data[drop]
    if fix_checksums:
        sums = json.loads(data["checksums.json"])
        for k in sums:
            if k in data:
                sums[k] = hashlib.sha256(data[k]).hexdigest()
        data["checksums.json"] = json.dumps(sums).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for k, v in data.items():
            z.writestr(k, v)
    return dst


def test_round_trip(saved):
    cm, path = saved
    back = artifact.load(path, "pynq-z1")
    assert back.config == cm.config
    assert [(n.op, n.name, n.inputs, n.outputs) for n in back.graph.nodes] == \
        [(n.op, n.name, n.inputs, n.outputs) for n in cm.graph.nodes]
    assert set(back.graph.initializers) == set(cm.graph.initializers)
    for k, v in cm.graph.initializers.items():
        np.testing.assert_array_equal(back.graph.initializers[k], v)
    assert len(back.programs) == len(cm.programs) == 1
    assert back.programs[0].insns == cm.programs[0].insns
    assert back.programs[0].segments == cm.programs[0].segments
    assert back.meta["node_map"] == cm.meta["node_map"]
    assert back.meta["node_map"][0]["onnx_nodes"] == ["/conv1/Conv", "/Relu"]
    assert [v.name for v in back.inputs] == ["x"] and [v.name for v in back.outputs] == ["logits"]
    x = np.load(DIGITS / "test.npz")["x"][:1]
    np.testing.assert_array_equal(run_compiled(back, {"x": x})["logits"],
                                  run_compiled(cm, {"x": x})["logits"])


def test_other_config_rejected(saved):
    _, path = saved
    with pytest.raises(ArtifactError, match="compiled for configuration 1x16_i8w8a32.*not "
                                            "1x8"):
        artifact.load(path, "tiny")


def test_truncated_and_missing_files(saved, tmp_path):
    _, path = saved
    blob = path.read_bytes()
    short = tmp_path / "short.pyvta"
    short.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(ArtifactError, match="truncated|not a zip"):
        artifact.load(short)
    with pytest.raises(ArtifactError, match="does not exist"):
        artifact.load(tmp_path / "none.pyvta")
    text = tmp_path / "text.pyvta"
    text.write_text("hello")
    with pytest.raises(ArtifactError, match="not a pyvta compiled model"):
        artifact.load(text)


def test_corruption_detected(saved, tmp_path):
    _, path = saved
    # A changed manifest whose checksum was not updated.
    bad = _rewrite(path, tmp_path / "c1.pyvta",
                   edit_manifest=lambda m: m["meta"].update(source="evil"), fix_checksums=False)
    with pytest.raises(ArtifactError, match="checksum mismatch in 'manifest.json'"):
        artifact.load(bad)
    # A flipped byte inside a stored member: zip's CRC or our sha256 catches it.
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("blobs/0")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF
    flipped = tmp_path / "c2.pyvta"
    flipped.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="corrupted"):
        artifact.load(flipped)
    missing = _rewrite(path, tmp_path / "c3.pyvta", drop="blobs/0", fix_checksums=False)
    with pytest.raises(ArtifactError, match="member 'blobs/0' is missing"):
        artifact.load(missing)


def test_other_format_version_rejected(saved, tmp_path):
    _, path = saved
    newer = _rewrite(path, tmp_path / "v2.pyvta", edit_manifest=lambda m: m.update(version=99))
    with pytest.raises(ArtifactError, match="format version 99.*recompile"):
        artifact.load(newer)
    alien = _rewrite(path, tmp_path / "a.pyvta", edit_manifest=lambda m: m.update(format="x"))
    with pytest.raises(ArtifactError, match="format 'x'"):
        artifact.load(alien)
