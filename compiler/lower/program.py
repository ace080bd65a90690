"""What the lowering produces: :class:`AccelProgram` and its parts (the compiler contract)."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ...hw.config import HwConfig
from ...hw.isa import INSN_BYTES, MemType, Opcode, insn_layout
from .. import qops
from ..layout import im2col, im2col_shape, pack_activation, packed_elements, unpack_activation

__all__ = ["AccelOp", "TensorPlacement", "AccelProgram", "qop_to_dict", "qop_from_dict"]


@dataclass
class AccelOp:
    """One quantized operator of a partition.

    ``name`` is the ONNX node name(s) it came from; ``qop`` a :mod:`pyvta.compiler.qops`
    dataclass; ``inputs``/``output`` value names; ``in_shapes``/``out_shape`` logical shapes.
    """
    name: str
    qop: object
    inputs: list
    output: str
    in_shapes: list
    out_shape: tuple

    def __post_init__(self):
        self.inputs = list(self.inputs)
        self.in_shapes = [tuple(int(d) for d in s) for s in self.in_shapes]
        self.out_shape = tuple(int(d) for d in self.out_shape)

    def reference(self, *xs):
        """The exact int8 result (the qops reference)."""
        return self.qop.reference(*xs)

    def to_dict(self) -> dict:
        return {"name": self.name, "qop": qop_to_dict(self.qop), "inputs": list(self.inputs),
                "output": self.output, "in_shapes": [list(s) for s in self.in_shapes],
                "out_shape": list(self.out_shape)}

    @classmethod
    def from_dict(cls, d: dict) -> "AccelOp":
        return cls(d["name"], qop_from_dict(d["qop"]), d["inputs"], d["output"],
                   d["in_shapes"], d["out_shape"])


@dataclass
class TensorPlacement:
    """An int8 tensor in the program's DRAM region.

    ``layout`` is ``"packed"`` (:func:`~pyvta.compiler.layout.pack_activation` of the logical
    ``shape``) or ``"im2col"`` (``params`` holds ``kernel, stride, pads, dilation``; the region
    holds the packed im2col of the tensor: the first convolution's input, see ``layout.py``).
    Use :meth:`pack` / :meth:`unpack` rather than the layout functions directly.
    """
    name: str
    shape: tuple
    offset: int
    layout: str = "packed"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)

    @property
    def stored_shape(self) -> tuple:
        """Logical shape of what is packed in the region."""
        if self.layout == "im2col":
            p = self.params
            return im2col_shape(self.shape, p["kernel"], p["stride"], p["pads"], p["dilation"])
        return self.shape

    def nbytes(self, cfg: HwConfig) -> int:
        return packed_elements(self.stored_shape, cfg) * cfg.inp_elem_bytes

    def pack(self, x: np.ndarray, cfg: HwConfig) -> bytes:
        """The bytes to write at ``offset`` for the int8 tensor ``x`` of ``shape``."""
        x = np.asarray(x)
        if tuple(x.shape) != self.shape:
            raise ValueError(f"input {self.name!r}: expected shape {self.shape}, got {x.shape}")
        if x.dtype != np.int8:
            raise ValueError(f"input {self.name!r}: expected int8 data, got {x.dtype}")
        if self.layout == "im2col":
            p = self.params
            x = im2col(x, p["kernel"], p["stride"], p["pads"], p["dilation"])
        return pack_activation(x, cfg).tobytes()

    def unpack(self, buf, cfg: HwConfig) -> np.ndarray:
        """The int8 tensor of ``shape`` from the bytes read at ``offset``."""
        if self.layout != "packed":
            raise ValueError(f"{self.name!r} has layout {self.layout!r}; only packed tensors "
                             f"can be read back")
        return unpack_activation(buf, self.shape, cfg)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "offset": self.offset,
                "layout": self.layout,
                "params": {k: list(v) for k, v in self.params.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorPlacement":
        params = {k: tuple(v) for k, v in d.get("params", {}).items()}
        return cls(d["name"], d["shape"], d["offset"], d.get("layout", "packed"), params)


@dataclass
class AccelProgram:
    """One partition compiled for one configuration (see the compiler contract, item 4)."""
    fingerprint: str
    insns: bytes
    dram_size: int
    segments: list
    inputs: list
    outputs: list
    ops: list
    node_ranges: list
    est_cycles: dict
    #: Tilings and other per-node facts, for profiling and reports.
    info: dict = field(default_factory=dict)

    @property
    def num_insns(self) -> int:
        return len(self.insns) // INSN_BYTES

    def image(self, cfg: HwConfig, feeds: dict | None = None, align: int = 64) -> np.ndarray:
        """The region's DRAM image at offset 0 (``dram_size`` rounded up to ``align`` bytes):
        the constant segments, plus each input of ``feeds`` ({name: array}) packed in place."""
        img = np.zeros(-(-self.dram_size // align) * align, np.uint8)
        for off, data in self.segments:
            img[off:off + len(data)] = np.frombuffer(data, np.uint8)
        for p in self.inputs:
            if feeds is not None and p.name in feeds:
                img[p.offset:p.offset + p.nbytes(cfg)] = np.frombuffer(
                    p.pack(feeds[p.name], cfg), np.uint8)
        return img

    def relocated_insns(self, base: int, cfg: HwConfig | None = None) -> bytes:
        """The instruction stream with ``base`` (bytes, 4096-aligned) added to every
        LOAD/STORE's DRAM address."""
        if base % 4096 or base < 0:
            raise ValueError(f"region base must be a non-negative multiple of 4096, "
                             f"not {base:#x}")
        if cfg is None:
            cfg = _cfg_of(self.fingerprint)
        elif cfg.fingerprint != self.fingerprint:
            raise ValueError(f"program was compiled for {self.fingerprint}, "
                             f"not {cfg.fingerprint}")
        lay = insn_layout(cfg)
        words = np.frombuffer(self.insns, "<u8").reshape(-1, 2).copy()
        lo, hi = words[:, 0], words[:, 1]
        op_off, op_w = lay.mem["opcode"]
        mt_off, mt_w = lay.mem["memory_type"]
        db_off, db_w = lay.mem["dram_base"]
        xs_off, xs_w = lay.mem["x_size"]
        opcode = (lo >> np.uint64(op_off)) & np.uint64((1 << op_w) - 1)
        mtype = (lo >> np.uint64(mt_off)) & np.uint64((1 << mt_w) - 1)
        xsize = (hi >> np.uint64(xs_off - 64)) & np.uint64((1 << xs_w) - 1)
        is_mem = ((opcode == Opcode.LOAD.value) | (opcode == Opcode.STORE.value)) & (xsize > 0)
        mask = np.uint64(((1 << db_w) - 1) << db_off)
        for mt in MemType:
            sel = is_mem & (mtype == mt.value)
            if not sel.any():
                continue
            eb = {MemType.UOP: cfg.uop_elem_bytes, MemType.INP: cfg.inp_elem_bytes,
                  MemType.WGT: cfg.wgt_elem_bytes, MemType.ACC: cfg.acc_elem_bytes,
                  MemType.OUT: cfg.out_elem_bytes}[mt]
            old = (lo[sel] & mask) >> np.uint64(db_off)
            new = old + np.uint64(base // eb)
            if int(new.max()) >= 1 << db_w:
                raise ValueError(f"region base {base:#x} puts a DRAM address beyond the "
                                 f"{db_w}-bit dram_base field")
            lo[sel] = (lo[sel] & ~mask) | (new << np.uint64(db_off))
        return words.tobytes()

    def to_dict(self) -> dict:
        """JSON-able values plus raw ``bytes`` (instructions, segments)."""
        return {"fingerprint": self.fingerprint, "insns": self.insns,
                "dram_size": self.dram_size,
                "segments": [[off, data] for off, data in self.segments],
                "inputs": [p.to_dict() for p in self.inputs],
                "outputs": [p.to_dict() for p in self.outputs],
                "ops": [op.to_dict() for op in self.ops],
                "node_ranges": [list(r) for r in self.node_ranges],
                "est_cycles": dict(self.est_cycles), "info": self.info}

    @classmethod
    def from_dict(cls, d: dict) -> "AccelProgram":
        return cls(d["fingerprint"], bytes(d["insns"]), int(d["dram_size"]),
                   [(int(o), bytes(b)) for o, b in d["segments"]],
                   [TensorPlacement.from_dict(p) for p in d["inputs"]],
                   [TensorPlacement.from_dict(p) for p in d["outputs"]],
                   [AccelOp.from_dict(o) for o in d["ops"]],
                   [(str(n), int(b), int(e)) for n, b, e in d["node_ranges"]],
                   {str(k): int(v) for k, v in d["est_cycles"].items()}, d.get("info", {}))


def _cfg_of(fingerprint: str) -> HwConfig:
    from ...hw.config import list_presets, load_config
    for name in list_presets():
        cfg = load_config(name)
        if cfg.fingerprint == fingerprint:
            return cfg
    raise ValueError(f"no preset has fingerprint {fingerprint!r}; pass cfg=")


# --- qops (de)serialisation ---------------------------------------------------------------------

def _enc(value):
    if isinstance(value, np.ndarray):
        return {"__ndarray__": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode(),
                "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, qops.Requant):
        return {"__requant__": {f.name: _enc(getattr(value, f.name))
                                for f in dataclasses.fields(value)}}
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def _dec(value):
    if isinstance(value, dict) and "__ndarray__" in value:
        return np.frombuffer(base64.b64decode(value["__ndarray__"]),
                             np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    if isinstance(value, dict) and "__requant__" in value:
        return qops.Requant(**{k: _dec(v) for k, v in value["__requant__"].items()})
    return value


def qop_to_dict(qop) -> dict:
    """A JSON-able dict of a qops dataclass (arrays base64-encoded)."""
    return {"type": type(qop).__name__,
            "fields": {f.name: _enc(getattr(qop, f.name)) for f in dataclasses.fields(qop)}}


def qop_from_dict(d: dict):
    cls = getattr(qops, d["type"], None)
    if cls is None or not dataclasses.is_dataclass(cls):
        raise ValueError(f"unknown quantized operator type {d['type']!r}")
    kwargs = {}
    for k, v in d["fields"].items():
        v = _dec(v)
        kwargs[k] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)
