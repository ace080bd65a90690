"""The compiled-model file (``MODEL.pyvta``): one versioned, checksummed zip archive.

Layout::

    manifest.json      format name and version, config fingerprint and full config, model
                       inputs/outputs, the partitioned Graph (nodes and value types), the
                       AccelPrograms (to_dict), quantization parameters and reports, the
                       instruction-range -> ONNX node map; binary values are references
                       ``{"$blob": "blobs/N"}`` into
    blobs/N            raw bytes (instructions, segments) or .npy arrays (initializers...)
    checksums.json     sha256 of manifest.json and of every blob

Loading checks, in order: the file is a readable zip (truncation shows here), every member's
sha256 (corruption), the format name and version, and the configuration fingerprint against
the one asked for. Each failure is an :class:`ArtifactError` saying which.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..hw.config import HwConfig, load_config
from .ir import Graph, Node, Value

__all__ = ["ArtifactError", "CompiledModel", "save", "load", "FORMAT", "VERSION"]

FORMAT = "pyvta-model"
VERSION = 1


class ArtifactError(ValueError):
    """A compiled-model file is unreadable, corrupted, of another version or another config."""


@dataclass
class CompiledModel:
    """A compiled model: partitioned Graph + accelerator programs for one configuration.

    ``inputs`` / ``outputs`` are the model's float :class:`~pyvta.compiler.ir.Value` s;
    ``meta`` holds quantization parameters, reports and the instruction -> ONNX node map.
    """
    graph: Graph
    programs: list           #: list[AccelProgram], indexed by the Accel nodes' "program" attr
    config: HwConfig
    inputs: list
    outputs: list
    meta: dict = field(default_factory=dict)


# --- JSON with binary blobs --------------------------------------------------------------------

class _Blobs:
    def __init__(self):
        self.members: dict = {}

    def put(self, data: bytes) -> dict:
        name = f"blobs/{len(self.members)}"
        self.members[name] = data
        return {"$blob": name}


def _encode(value, blobs: _Blobs):
    if isinstance(value, (bytes, bytearray, memoryview)):
        return blobs.put(bytes(value))
    if isinstance(value, np.ndarray):
        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        return {"$npy": blobs.put(buf.getvalue())["$blob"]}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise ArtifactError(f"cannot store a dict with non-string key {bad[0]!r}")
        return {k: _encode(v, blobs) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, blobs) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return {"$float": repr(value)}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ArtifactError(f"cannot store a value of type {type(value).__name__} in an artifact")


def _decode(value, members):
    if isinstance(value, dict):
        if "$blob" in value and len(value) == 1:
            return members(value["$blob"])
        if "$npy" in value and len(value) == 1:
            return np.load(io.BytesIO(members(value["$npy"])), allow_pickle=False)
        if "$float" in value and len(value) == 1:
            return float(value["$float"])
        return {k: _decode(v, members) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, members) for v in value]
    return value


def _value_dict(v: Value) -> dict:
    return {"name": v.name, "shape": list(v.shape), "dtype": v.dtype.str}


def _value_from(d: dict) -> Value:
    return Value(d["name"], d["shape"], np.dtype(d["dtype"]))


def _graph_dict(g: Graph) -> dict:
    return {"name": g.name, "opset": g.opset,
            "inputs": [_value_dict(v) for v in g.inputs],
            "outputs": [_value_dict(v) for v in g.outputs],
            "values": [_value_dict(v) for v in g.values.values()],
            "initializers": dict(g.initializers),
            "nodes": [{"op": n.op, "name": n.name, "domain": n.domain, "inputs": list(n.inputs),
                       "outputs": list(n.outputs), "attrs": dict(n.attrs)} for n in g.nodes]}


def _graph_from(d: dict) -> Graph:
    values = {v["name"]: _value_from(v) for v in d["values"]}
    nodes = [Node(n["op"], n["name"], n["inputs"], n["outputs"], n["attrs"], n["domain"])
             for n in d["nodes"]]
    g = Graph(nodes=nodes, inputs=[_value_from(v) for v in d["inputs"]],
              outputs=[_value_from(v) for v in d["outputs"]],
              initializers={k: np.asarray(v) for k, v in d["initializers"].items()},
              values=values, name=d["name"], opset=int(d["opset"]))
    g.verify()
    return g


# --- save / load -------------------------------------------------------------------------------

def save(path, model: CompiledModel) -> Path:
    """Write ``model`` to ``path`` (atomically: a temporary file renamed at the end)."""
    blobs = _Blobs()
    manifest = {
        "format": FORMAT, "version": VERSION,
        "fingerprint": model.config.fingerprint,
        "config": model.config.to_dict(),
        "inputs": [_value_dict(v) for v in model.inputs],
        "outputs": [_value_dict(v) for v in model.outputs],
        "graph": _encode(_graph_dict(model.graph), blobs),
        "programs": [_encode(p.to_dict(), blobs) for p in model.programs],
        "meta": _encode(model.meta, blobs),
    }
    text = json.dumps(manifest, indent=1).encode()
    checksums = {"manifest.json": hashlib.sha256(text).hexdigest()}
    checksums.update({k: hashlib.sha256(v).hexdigest() for k, v in blobs.members.items()})
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("checksums.json", json.dumps(checksums, indent=1))
        z.writestr("manifest.json", text)
        for k, v in blobs.members.items():
            z.writestr(k, v)
    tmp.replace(path)
    return path


def _read_members(path: Path):
    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArtifactError(f"compiled model {str(path)!r} does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ArtifactError(f"{str(path)!r} is not a pyvta compiled model (truncated or not a "
                            f"zip archive: {exc})") from None
    with z:
        try:
            data = {info.filename: z.read(info) for info in z.infolist()}
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            # zipfile checks each member's CRC-32 while reading.
            raise ArtifactError(f"{str(path)!r} is corrupted: {exc}") from None
    return data


def load(path, cfg=None) -> CompiledModel:
    """Read a compiled model; with ``cfg`` (preset, path or HwConfig), insist it matches.

    Raises :class:`ArtifactError` for a missing, truncated, corrupted, foreign-version or
    other-configuration file.
    """
    path = Path(path)
    data = _read_members(path)
    if "manifest.json" not in data or "checksums.json" not in data:
        raise ArtifactError(f"{str(path)!r} is not a pyvta compiled model (no manifest)")
    try:
        checksums = json.loads(data["checksums.json"])
    except ValueError:
        raise ArtifactError(f"{str(path)!r} is corrupted: unreadable checksums") from None
    for name, want in checksums.items():
        if name not in data:
            raise ArtifactError(f"{str(path)!r} is corrupted: member {name!r} is missing")
        if hashlib.sha256(data[name]).hexdigest() != want:
            raise ArtifactError(f"{str(path)!r} is corrupted: checksum mismatch in {name!r}")
    try:
        manifest = json.loads(data["manifest.json"])
    except ValueError:
        raise ArtifactError(f"{str(path)!r} is corrupted: unreadable manifest") from None
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{str(path)!r} is not a pyvta compiled model "
                            f"(format {manifest.get('format')!r})")
    if manifest.get("version") != VERSION:
        raise ArtifactError(f"{str(path)!r} has format version {manifest.get('version')!r}; "
                            f"this pyvta reads version {VERSION}: recompile the model")
    stored = HwConfig.from_dict(manifest["config"], name=manifest["config"].get("name", "stored"))
    if stored.fingerprint != manifest["fingerprint"]:
        raise ArtifactError(f"{str(path)!r} is corrupted: config does not match its fingerprint")
    if cfg is not None:
        want = load_config(cfg)
        if want.fingerprint != stored.fingerprint:
            raise ArtifactError(f"{str(path)!r} was compiled for configuration "
                                f"{stored.fingerprint}, not {want.fingerprint}: recompile it "
                                f"with --config")

    def member(name):
        if name not in checksums:
            raise ArtifactError(f"{str(path)!r} is corrupted: blob {name!r} is not checksummed")
        return data[name]

    from .lower.program import AccelProgram  # the lowering owns the program format
    programs = [AccelProgram.from_dict(_decode(p, member)) for p in manifest["programs"]]
    for k, p in enumerate(programs):
        if p.fingerprint != stored.fingerprint:
            raise ArtifactError(f"{str(path)!r}: program {k} is for {p.fingerprint}, not "
                                f"{stored.fingerprint}")
    graph = _graph_from(_decode(manifest["graph"], member))
    return CompiledModel(graph=graph, programs=programs, config=stored,
                         inputs=[_value_from(v) for v in manifest["inputs"]],
                         outputs=[_value_from(v) for v in manifest["outputs"]],
                         meta=_decode(manifest["meta"], member))
