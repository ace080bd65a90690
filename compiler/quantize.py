"""Post-training static quantization: float Graph -> Graph of int8 accelerator operators.

Activations and weights are int8 and symmetric (zero point 0); biases are int32 in the
accumulator's scale. Each accelerator-capable pattern of the float graph becomes one node of
domain ``pyvta`` whose ``attrs["qop"]`` is a :mod:`~pyvta.compiler.qops` object:

=========================================  ==========================
float pattern                              quantized operator
=========================================  ==========================
Conv [+ Relu | Clip | Max/Min by const]    ``QConv2d`` (requant clip)
Gemm / MatMul (2-D, constant weight) [+..] ``QDense``
Add / Sum of two same-shape activations    ``QAdd``
MaxPool (no ceil mode, no dilation)        ``QMaxPool``
GlobalAveragePool / AveragePool            ``QAvgPool``
=========================================  ==========================

Everything else stays a float ONNX node; ``QuantizeLinear`` / ``DequantizeLinear`` nodes are
inserted where int8 and float meet.

Two scale schemes (``mode``):

* ``per-channel``: activation scale ``amax / 127``; weight scale per output channel;
  requantization with a per-channel integer multiplier (``qops.Requant``), whose
  ``pre_shift`` / ``shift`` are chosen by :func:`choose_requant` so that no int32 intermediate
  can overflow for *any* int8 input, and whose rounding error is smallest.
* ``pow2``: VTA's scheme: every scale a power of two, requantization a pure shift (mult = 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import qops
from .calibrate import activation_ranges, iter_batches, run_float
from .ir import Graph, Node, Value

__all__ = ["QuantizeError", "QuantizedModel", "LayerReport", "quantize", "choose_requant",
           "run_quantized", "MODES", "QUANT_DOMAIN"]

MODES = ("per-channel", "pow2")
QUANT_DOMAIN = "pyvta"
_INT32_MAX = (1 << 31) - 1


class QuantizeError(ValueError):
    """Quantization is impossible (bad mode, overflow that cannot be avoided...)."""


@dataclass
class LayerReport:
    """Quantization error of one accelerator operator's output against the float model."""
    name: str
    op: str
    sqnr_db: float
    scale: float


@dataclass
class QuantizedModel:
    """The quantized Graph with its scales and the per-layer error report."""
    graph: Graph
    scales: dict                 #: float value name -> activation scale
    mode: str
    method: str
    report: list = field(default_factory=list)   #: list[LayerReport]


# --- Scales and requantization -----------------------------------------------------------------

def _act_scale(amax: float, mode: str) -> float:
    amax = max(float(amax), 1e-8)   # an all-zero tensor still needs a usable scale
    s = amax / 127.0
    return 2.0 ** math.ceil(math.log2(s)) if mode == "pow2" else s


def _weight_scales(w: np.ndarray, mode: str) -> np.ndarray:
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1).astype(np.float64)
    if mode == "pow2":
        t = max(float(amax.max()), 1e-8) / 127.0
        return np.full(w.shape[0], 2.0 ** math.ceil(math.log2(t)))
    return np.where(amax > 0, amax, 1.0) / 127.0


def _quant_weight(w, scales):
    shape = (-1,) + (1,) * (w.ndim - 1)
    return np.clip(np.round(w / scales.reshape(shape)), -127, 127).astype(np.int8)


def choose_requant(mult_real, acc_bound, lo=-128, hi=127):
    """Integer requantization of ``y = acc * mult_real[c]`` that never overflows int32.

    ``acc_bound[c]`` bounds ``|acc|`` for any int8 input. Among shifts ``0 <= shift <= 16`` and
    ``0 <= pre_shift <= 31``, picks the pair with the smallest worst-case rounding error (from
    truncating ``acc >> pre_shift`` and from rounding the multiplier) such that
    ``((|acc| >> pre) + 1) * mult + 2**(shift-1)`` stays within int32 for every channel.

    Returns ``(Requant, bias_adjust)``: adding ``bias_adjust`` (``2**(pre-1)`` or 0) to the
    int32 bias turns the truncating pre-shift into round-half-up.
    """
    m = np.atleast_1d(np.asarray(mult_real, np.float64))
    bound = np.broadcast_to(np.asarray(acc_bound, np.int64), m.shape)
    if np.any(m < 0) or not np.all(np.isfinite(m)):
        raise QuantizeError(f"requantization multipliers must be finite and >= 0, not {m}")
    best = None
    for shift in range(16, -1, -1):
        for pre in range(0, 32):
            mult = np.round(m * 2.0 ** (pre + shift))
            if mult.max() > _INT32_MAX:
                break       # larger pre only grows the multiplier
            rnd = (1 << (shift - 1)) if shift else 0
            worst = ((bound + (1 << pre if pre else 0)) >> pre) + 1
            if np.any(worst.astype(np.float64) * mult + rnd > _INT32_MAX):
                continue
            # Error in output units: half an acc step after the (rounded) pre-shift, the
            # multiplier's relative rounding error at full scale, and the final rounding.
            err = (2.0 ** pre * m / 2 + 127.0 * np.abs(mult / 2.0 ** (pre + shift) - m)
                   / np.maximum(m, 1e-30) + (0.5 if shift else 0.0)).max()
            if best is None or err < best[0] - 1e-12:
                best = (err, shift, pre, mult)
    if best is None:
        raise QuantizeError(f"no requantization avoids int32 overflow (accumulator bound "
                            f"{int(bound.max())}, multiplier {m.max():.3g})")
    _, shift, pre, mult = best
    rq = qops.Requant(mult=mult.astype(np.int32) if mult.size > 1 else
                      np.asarray(mult[0], np.int32), shift=shift, pre_shift=pre, lo=lo, hi=hi)
    return rq, ((1 << (pre - 1)) if pre else 0)


def _pow2_requant(mult_real, lo, hi):
    """VTA's power-of-two requantization: ``mult_real`` is ``2**-n``, so ``y = acc >> n``."""
    m = float(np.atleast_1d(mult_real).max())
    n = -int(round(math.log2(m)))
    if n < 0:
        return qops.Requant(mult=np.asarray(1 << -n, np.int32), lo=lo, hi=hi), 0
    shift = min(n, 16)
    return qops.Requant(mult=np.asarray(1, np.int32), shift=shift, pre_shift=n - shift,
                        lo=lo, hi=hi), 0


def _requant(mode, mult_real, acc_bound, lo, hi):
    if mode == "pow2":
        rq, adjust = _pow2_requant(mult_real, lo, hi)
        worst = ((int(np.max(acc_bound)) >> rq.pre_shift) + 1) * int(np.max(rq.mult))
        if worst + ((1 << (rq.shift - 1)) if rq.shift else 0) <= _INT32_MAX:
            return rq, adjust
        # A pure shift could wrap around int32: choose_requant finds a safe form (its
        # multiplier is still a power of two, since mult_real is one) or raises.
    return choose_requant(mult_real, acc_bound, lo, hi)


# --- Pattern matching ------------------------------------------------------------------------

class _Builder:
    """Builds the quantized graph while walking the float graph in order."""

    def __init__(self, graph: Graph, amax: dict, mode: str):
        self.g = graph
        self.amax = amax
        self.mode = mode
        self.consumers = graph.consumers()
        self.outputs = {v.name for v in graph.outputs}
        self.nodes: list = []
        self.inits: dict = {}
        self.values: dict = {}
        self.qval: dict = {}        # float name -> int8 name
        self.scales: dict = {}      # float name -> scale
        self.fval = {v.name for v in graph.inputs} | set(graph.initializers)
        self.fused: set = set()     # ids of float nodes absorbed into a quantized node

    def const(self, name):
        return self.g.initializers.get(name) if name else None

    def scale(self, name):
        if name not in self.scales:
            self.scales[name] = _act_scale(self.amax.get(name, 0.0), self.mode)
        return self.scales[name]

    def _qparams(self, name, scale):
        s, z = f"{name}/scale", f"{name}/zero_point"
        if s not in self.inits:
            self.inits[s] = np.asarray(scale, np.float32)
            self.inits[z] = np.asarray(0, np.int8)
            self.values[s] = Value(s, (), np.float32)
            self.values[z] = Value(z, (), np.int8)
        return s, z

    def int8(self, name) -> str:
        """The int8 version of float value ``name`` (adding a QuantizeLinear if needed)."""
        if name not in self.qval:
            q = f"{name}_q"
            s, z = self._qparams(q, self.scale(name))
            self.nodes.append(Node("QuantizeLinear", f"{name}/quantize", [name, s, z], [q],
                                   {"axis": 1}))
            self.values[q] = Value(q, self.g.values[name].shape, np.int8)
            self.qval[name] = q
        return self.qval[name]

    def float_(self, name) -> None:
        """Make float value ``name`` available (adding a DequantizeLinear if needed)."""
        if name in self.fval:
            return
        q = self.qval[name]
        s, z = self._qparams(q, self.scales[name])
        self.nodes.append(Node("DequantizeLinear", f"{name}/dequantize", [q, s, z], [name],
                               {"axis": 1}))
        self.fval.add(name)

    def fuse_activation(self, out: str):
        """Follow ``out`` through a fusable activation; returns (final name, lo, hi, nodes)."""
        users = self.consumers.get(out, [])
        if len(users) != 1 or out in self.outputs:
            return out, None, None, []
        n = users[0]
        lo = hi = None
        if n.op == "Relu":
            lo = 0.0
        elif n.op == "Clip" and all(i == "" or self.const(i) is not None for i in n.inputs[1:]):
            lo = float(self.const(n.inputs[1])) if len(n.inputs) > 1 and n.inputs[1] else None
            hi = float(self.const(n.inputs[2])) if len(n.inputs) > 2 and n.inputs[2] else None
        elif n.op in ("Max", "Min") and len(n.inputs) == 2 and n.inputs[0] == out \
                and self.const(n.inputs[1]) is not None and self.const(n.inputs[1]).size == 1:
            v = float(self.const(n.inputs[1]))
            lo, hi = (v, None) if n.op == "Max" else (None, v)
        else:
            return out, None, None, []
        return n.outputs[0], lo, hi, [n]

    def emit(self, op, node, qop, inputs, out, fused=()):
        q = f"{out}_q"
        # The float originals ride along so that the partitioner can put the operator back on
        # the CPU if the accelerator cannot run it.
        attrs = {"qop": qop, "scale": self.scale(out), "float_nodes": [node, *fused],
                 "float_inputs": list(inputs), "in_scales": [self.scale(i) for i in inputs],
                 "float_output": out,
                 "float_consts": {i: self.g.initializers[i] for m in (node, *fused)
                                  for i in m.inputs if i in self.g.initializers},
                 "float_values": {v: self.g.values[v] for m in (node, *fused)
                                  for v in list(m.inputs) + list(m.outputs) if v},
                 "onnx_nodes": [m.name for m in (node, *fused)]}
        self.nodes.append(Node(op, node.name, [self.int8(i) for i in inputs], [q], attrs,
                               domain=QUANT_DOMAIN))
        self.values[q] = Value(q, self.g.values[out].shape, np.int8)
        self.qval[out] = q

    def clip_range(self, scale, lo, hi):
        qlo = -128 if lo is None else int(np.clip(np.round(lo / scale), -128, 127))
        qhi = 127 if hi is None else int(np.clip(np.round(hi / scale), -128, 127))
        return qlo, max(qlo, qhi)


def _conv_like(b: _Builder, n: Node, weight: np.ndarray, bias, x: str, make):
    """Shared part of Conv and dense: weights, bias, requantization, fused activation."""
    out, lo, hi, fused = b.fuse_activation(n.outputs[0])
    s_in, s_out = b.scale(x), b.scale(out)
    s_w = _weight_scales(weight, b.mode)
    wq = _quant_weight(weight, s_w)
    s_acc = s_in * s_w
    bias = np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
    bq = np.round(bias / s_acc)
    if np.abs(bq).max(initial=0) > _INT32_MAX // 2:
        raise QuantizeError(f"node {n.name!r}: bias does not fit int32 at scale {s_acc.min():.3g}")
    acc_bound = np.abs(wq.reshape(wq.shape[0], -1).astype(np.int64)).sum(1) * 128 + np.abs(bq)
    qlo, qhi = b.clip_range(s_out, lo, hi)
    rq, adjust = _requant(b.mode, s_acc / s_out, acc_bound.astype(np.int64), qlo, qhi)
    if np.any(acc_bound + adjust > _INT32_MAX):
        raise QuantizeError(f"node {n.name!r}: the int32 accumulator can overflow")
    qop = make(wq, (bq + adjust).astype(np.int32), rq)
    b.fused.update(id(f) for f in fused)
    return qop, out, fused


def _match_conv(b, n):
    w, bias = b.const(n.inputs[1]), b.const(n.inputs[2]) if len(n.inputs) > 2 else None
    if w is None or w.ndim != 4 or (len(n.inputs) > 2 and n.inputs[2] and bias is None):
        return None
    a = n.attrs
    pads = a["pads"]
    qop, out, fused = _conv_like(b, n, w, bias, n.inputs[0], lambda wq, bq, rq: qops.QConv2d(
        wq, bq, rq, stride=tuple(a["strides"]), pads=(pads[0], pads[1], pads[2], pads[3]),
        dilation=tuple(a["dilations"]), groups=int(a["group"])))
    return "QConv2d", qop, [n.inputs[0]], out, fused


def _match_dense(b, n):
    x = n.inputs[0]
    if len(b.g.values[x].shape) != 2:
        return None
    w = b.const(n.inputs[1])
    if w is None or w.ndim != 2:
        return None
    bias = None
    if n.op == "Gemm":
        a = n.attrs
        if a["transA"]:
            return None
        w = (w if a["transB"] else w.T) * a["alpha"]
        if len(n.inputs) > 2 and n.inputs[2]:
            c = b.const(n.inputs[2])
            if c is None or c.size not in (1, w.shape[0]):
                return None
            bias = np.broadcast_to(c.reshape(-1) * a["beta"], (w.shape[0],))
    else:
        w = w.T
    qop, out, fused = _conv_like(b, n, w, bias, x, lambda wq, bq, rq: qops.QDense(wq, bq, rq))
    return "QDense", qop, [x], out, fused


def _match_add(b, n):
    if len(n.inputs) != 2:      # Sum is variadic; two operands is the residual case
        return None
    x, y = n.inputs
    if b.const(x) is not None or b.const(y) is not None or \
            b.g.values[x].shape != b.g.values[y].shape or len(b.g.values[x].shape) not in (2, 4):
        return None
    out, lo, hi, fused = b.fuse_activation(n.outputs[0])
    sa, sb, sy = b.scale(x), b.scale(y), b.scale(out)
    ra, rb = sa / sy, sb / sy
    shift = 16
    while shift > 0 and round(max(ra, rb) * 2 ** shift) >= 1 << 15:
        shift -= 1
    ma, mb = int(round(ra * 2 ** shift)), int(round(rb * 2 ** shift))
    if max(ma, mb) >= 1 << 15:
        raise QuantizeError(f"node {n.name!r}: input/output scale ratio {max(ra, rb):.3g} is too "
                            f"large for QAdd")
    qlo, qhi = b.clip_range(sy, lo, hi)
    b.fused.update(id(f) for f in fused)
    return "QAdd", qops.QAdd(ma, mb, shift, qlo, qhi), [x, y], out, fused


def _match_maxpool(b, n):
    a = n.attrs
    if len(b.g.values[n.inputs[0]].shape) != 4 or a["ceil_mode"] or any(
            d != 1 for d in a["dilations"]) or len([o for o in n.outputs if o]) != 1:
        return None
    # Max commutes with a positive scale: the output keeps the input's scale exactly.
    b.scales[n.outputs[0]] = b.scale(n.inputs[0])
    p = a["pads"]
    return "QMaxPool", qops.QMaxPool(tuple(a["kernel_shape"]), tuple(a["strides"]),
                                     (p[0], p[1], p[2], p[3])), [n.inputs[0]], n.outputs[0], []


def _match_avgpool(b, n):
    x = n.inputs[0]
    shape = b.g.values[x].shape
    if len(shape) != 4:
        return None
    if n.op == "GlobalAveragePool":
        window, kernel, stride, pads = shape[2] * shape[3], None, (1, 1), (0, 0, 0, 0)
    else:
        a = n.attrs
        p = a["pads"]
        if a["ceil_mode"] or (any(p) and not a["count_include_pad"]):
            return None
        kernel, stride, pads = tuple(a["kernel_shape"]), tuple(a["strides"]), (p[0], p[1], p[2],
                                                                              p[3])
        window = kernel[0] * kernel[1]
    out = n.outputs[0]
    s_in, s_out = b.scale(x), b.scale(out)
    rq, _ = _requant(b.mode, np.asarray([s_in / (window * s_out)]), np.asarray([128 * window]),
                     -128, 127)
    return "QAvgPool", qops.QAvgPool(rq, kernel, stride, pads), [x], out, []


_MATCHERS = {"Conv": _match_conv, "Gemm": _match_dense, "MatMul": _match_dense,
             "Add": _match_add, "Sum": _match_add, "MaxPool": _match_maxpool,
             "GlobalAveragePool": _match_avgpool,
             "AveragePool": _match_avgpool}


#: Operators that only move or select elements: they commute with a per-tensor scale, so the
#: CPU runs them on the int8 values directly (exact, and no float round trip).
_MOVE_OPS = {"Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Identity"}


def _int8_passthrough(b: _Builder, n: Node) -> bool:
    """Run a data-movement node on int8 when its data input exists only as int8."""
    if n.op not in _MOVE_OPS or n.domain or not n.inputs:
        return False
    x, out = n.inputs[0], n.outputs[0]
    if x not in b.qval or x in b.fval or any(i and i not in b.g.initializers
                                             for i in n.inputs[1:]):
        return False
    q = f"{out}_q"
    b.scales[out] = b.scales[x]
    b.nodes.append(Node(n.op, n.name, [b.qval[x]] + list(n.inputs[1:]), [q], dict(n.attrs)))
    b.values[q] = Value(q, b.g.values[out].shape, np.int8)
    b.qval[out] = q
    return True


# --- Driver ----------------------------------------------------------------------------------

def quantize(graph: Graph, calib: dict, *, mode: str = "per-channel", method: str = "minmax",
             report: bool = True, progress=None) -> QuantizedModel:
    """Quantize ``graph`` (float, from :func:`~pyvta.compiler.frontend.import_model`).

    Parameters
    ----------
    calib : dict
        ``{input name: (S,) + input shape}`` from :func:`~pyvta.compiler.calibrate.load_calibration`
        (or :func:`~pyvta.compiler.calibrate.random_calibration`).
    mode : ``"per-channel"`` | ``"pow2"``
    method : ``"minmax"`` | ``"percentile"``
    report : compute the per-layer SQNR against the float model.
    """
    if mode not in MODES:
        raise QuantizeError(f"quantization mode {mode!r} is unknown; expected one of "
                            f"{', '.join(MODES)}")
    amax = activation_ranges(graph, calib, method, progress=progress)
    b = _Builder(graph, amax, mode)
    for n in graph.nodes:
        if id(n) in b.fused:
            continue
        if _int8_passthrough(b, n):
            continue
        m = _MATCHERS.get(n.op)
        hit = m(b, n) if m and not n.domain else None
        if hit is None:
            for i in n.inputs:
                if i:
                    b.float_(i)
            b.nodes.append(n)
            b.fval.update(o for o in n.outputs if o)
            continue
        op, qop, inputs, out, fused = hit
        b.emit(op, n, qop, inputs, out, fused)
        if progress:
            progress(f"quantize: {n.name} -> {op}")
    for v in graph.outputs:
        b.float_(v.name)
    values = dict(graph.values)
    values.update(b.values)
    used = {i for n in b.nodes for i in n.inputs if i}
    inits = {k: v for k, v in graph.initializers.items() if k in used}
    inits.update(b.inits)
    qgraph = Graph(nodes=b.nodes, inputs=list(graph.inputs), outputs=list(graph.outputs),
                   initializers=inits, values=values, name=graph.name, opset=graph.opset)
    from .passes import eliminate_dead_code
    qgraph = eliminate_dead_code(qgraph)
    qgraph.verify()
    qm = QuantizedModel(qgraph, b.scales, mode, method)
    if report:
        qm.report = layer_report(graph, qm, calib)
    return qm


def run_quantized(graph: Graph, feeds: dict, keep: bool = False) -> dict:
    """Execute a quantized graph: pyvta nodes by their exact int8 references, others on the CPU.

    Returns the graph outputs, or every value when ``keep`` is true.
    """
    from ..runtime.cpu.numpy_ops import run_node
    env = dict(graph.initializers)
    env.update(feeds)
    for n in graph.nodes:
        ins = [env[i] if i else None for i in n.inputs]
        if n.domain == QUANT_DOMAIN and "qop" in n.attrs:
            outs = [n.attrs["qop"].reference(*ins)]
        else:
            outs = run_node(n, ins)
        env.update({o: a for o, a in zip(n.outputs, outs) if o})
    if keep:
        return env
    return {v.name: env[v.name] for v in graph.outputs}


def _sqnr(ref, err_energy):
    if err_energy == 0:
        return float("inf")
    return 10 * math.log10(max(ref, 1e-30) / err_energy)


def layer_report(graph: Graph, qm: QuantizedModel, calib: dict, max_batches: int = 32) -> list:
    """Per accelerator operator: SQNR (dB) of its dequantized int8 output against float."""
    qnodes = [n for n in qm.graph.nodes if n.domain == QUANT_DOMAIN]
    float_names = [n.outputs[0].removesuffix("_q") for n in qnodes]
    names = float_names + [v.name for v in graph.outputs]
    sig = {k: 0.0 for k in names}
    err = {k: 0.0 for k in names}
    for i, feeds in enumerate(iter_batches(calib)):
        if i >= max_batches:
            break
        ref = run_float(graph, feeds, names)
        got = run_quantized(qm.graph, feeds, keep=True)
        for f, n in zip(float_names, qnodes):
            deq = got[n.outputs[0]].astype(np.float64) * n.attrs["scale"]
            sig[f] += float(np.sum(ref[f].astype(np.float64) ** 2))
            err[f] += float(np.sum((ref[f] - deq) ** 2))
        for v in graph.outputs:
            sig[v.name] += float(np.sum(ref[v.name].astype(np.float64) ** 2))
            err[v.name] += float(np.sum((ref[v.name] - got[v.name]) ** 2))
    out = [LayerReport(n.name, n.op, _sqnr(sig[f], err[f]), n.attrs["scale"])
           for f, n in zip(float_names, qnodes)]
    out += [LayerReport(v.name, "output", _sqnr(sig[v.name], err[v.name]), float("nan"))
            for v in graph.outputs]
    return out
