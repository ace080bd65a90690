"""ONNX operators in numpy: the reference CPU path of the runtime.

:func:`run_node` executes one :class:`~pyvta.compiler.ir.Node` with ONNX semantics. The LLVM
fallback (``runtime/cpu/llvm``) is checked against these functions and falls back to them for any
operator or shape it does not compile; they are also what runs where llvmlite is missing.

Each operator is one function named as in ONNX, taking ``(node, *inputs)`` where an omitted
optional input is ``None``. Attribute defaults follow the ONNX specification (the frontend fills
them in, but nodes built by hand may leave them out).
"""

from __future__ import annotations

import numpy as np

__all__ = ["run_node", "supported_ops", "UnsupportedOpError", "OPS", "erf", "conv_pads",
           "pool_output_shape"]


class UnsupportedOpError(RuntimeError):
    """The CPU fallback has no implementation of an operator (or of one of its modes)."""


OPS: dict = {}


def _op(*names):
    def register(fn):
        for name in names:
            OPS[name] = fn
        return fn
    return register


def supported_ops() -> list:
    """Names of the ONNX operators :func:`run_node` executes."""
    return sorted(OPS)


def run_node(node, inputs: list) -> list:
    """Execute ``node`` on numpy ``inputs`` (``None`` for omitted optional inputs).

    Returns one array per node output (an omitted output gets ``None``).
    """
    fn = OPS.get(node.op)
    if fn is None or node.domain not in ("", "ai.onnx"):
        raise UnsupportedOpError(f"the CPU fallback does not implement operator "
                                 f"{node.domain + '.' if node.domain else ''}{node.op} "
                                 f"(node {node.name!r})")
    out = fn(node, *inputs)
    if not isinstance(out, (list, tuple)):
        out = [out]
    return [np.asarray(o) if o is not None else None for o in out][:max(len(node.outputs), 1)]


def _attr(node, name, default=None):
    value = node.attrs.get(name, default)
    return default if value is None else value


# ---------------------------------------------------------------------------------------------
# Element-wise

def erf(x) -> np.ndarray:
    """The error function, vectorised: its Taylor series for |x| < 1 (no cancellation near 0),
    Numerical Recipes' erfc fit (1.2e-7 relative) beyond; float64 inside."""
    x = np.asarray(x)
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    r = t * np.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
        0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
            1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    big = np.where(x >= 0, 1.0 - r, r - 1.0)
    zz = z * z
    term = z.copy()
    series = np.zeros_like(z)
    for n in range(16):
        series += term / (2 * n + 1)
        term = -term * zz / (n + 1)
    small = np.sign(x) * series * 1.1283791670955126
    out = np.where(z < 1.0, small, big)
    return out.astype(x.dtype if x.dtype.kind == "f" else np.float64)


def _binary(fn):
    def run(node, a, b):
        out = fn(a, b)
        return np.asarray(out).astype(np.result_type(a, b), copy=False)
    return run


OPS["Add"] = _binary(np.add)
OPS["Sub"] = _binary(np.subtract)
OPS["Mul"] = _binary(np.multiply)


@_op("Div")
def Div(node, a, b):
    if np.issubdtype(a.dtype, np.integer):
        # ONNX integer division truncates toward zero (C semantics).
        return np.trunc(a.astype(np.float64) / b.astype(np.float64)).astype(a.dtype)
    return np.divide(a, b).astype(a.dtype)


@_op("Pow")
def Pow(node, a, b):
    return np.power(a, b.astype(a.dtype) if a.dtype.kind == "f" else b).astype(a.dtype)


@_op("Mod")
def Mod(node, a, b):
    if _attr(node, "fmod", 0):
        return np.fmod(a, b)
    return np.mod(a, b)


def _unary(fn):
    def run(node, x):
        return np.asarray(fn(x)).astype(x.dtype, copy=False)
    return run


for _name, _fn in {"Neg": np.negative, "Abs": np.abs, "Sqrt": np.sqrt, "Exp": np.exp,
                   "Log": np.log, "Floor": np.floor, "Ceil": np.ceil, "Sin": np.sin,
                   "Cos": np.cos, "Tan": np.tan, "Reciprocal": np.reciprocal, "Tanh": np.tanh,
                   "Sign": np.sign, "Round": np.round, "Erf": erf,
                   "Relu": lambda x: np.maximum(x, 0),
                   "Sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
                   "Softplus": lambda x: np.logaddexp(0, x),
                   "Softsign": lambda x: x / (1 + np.abs(x)),
                   "Not": np.logical_not}.items():
    OPS[_name] = _unary(_fn)


@_op("Identity", "Dropout")
def Identity(node, x, *rest):
    if node.op == "Dropout" and len(node.outputs) > 1 and node.outputs[1]:
        return [x.copy(), np.ones(x.shape, bool)]
    return x.copy()


@_op("LeakyRelu")
def LeakyRelu(node, x):
    alpha = _attr(node, "alpha", 0.01)
    return np.where(x >= 0, x, x * np.asarray(alpha, x.dtype)).astype(x.dtype)


@_op("Elu")
def Elu(node, x):
    alpha = _attr(node, "alpha", 1.0)
    return np.where(x > 0, x, alpha * (np.exp(x) - 1)).astype(x.dtype)


@_op("Selu")
def Selu(node, x):
    alpha = _attr(node, "alpha", 1.67326319217681884765625)
    gamma = _attr(node, "gamma", 1.05070102214813232421875)
    return (gamma * np.where(x > 0, x, alpha * (np.exp(x) - 1))).astype(x.dtype)


@_op("HardSigmoid")
def HardSigmoid(node, x):
    alpha = _attr(node, "alpha", 0.2)
    beta = _attr(node, "beta", 0.5)
    return np.clip(alpha * x + beta, 0, 1).astype(x.dtype)


@_op("HardSwish")
def HardSwish(node, x):
    return (x * np.clip(x / 6.0 + 0.5, 0, 1)).astype(x.dtype)


@_op("Gelu")
def Gelu(node, x):
    if _attr(node, "approximate", "none") == "tanh":
        y = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    else:
        y = 0.5 * x * (1 + erf(x / np.sqrt(2)))
    return y.astype(x.dtype)


@_op("Mish")
def Mish(node, x):
    return (x * np.tanh(np.logaddexp(0, x))).astype(x.dtype)


@_op("PRelu")
def PRelu(node, x, slope):
    return np.where(x >= 0, x, x * slope).astype(x.dtype)


@_op("Clip")
def Clip(node, x, lo=None, hi=None):
    # Opset < 11 gives the bounds as attributes, later opsets as optional inputs.
    if lo is None and "min" in node.attrs:
        lo = node.attrs["min"]
    if hi is None and "max" in node.attrs:
        hi = node.attrs["max"]
    y = x
    if lo is not None:
        y = np.maximum(y, np.asarray(lo, x.dtype))
    if hi is not None:
        y = np.minimum(y, np.asarray(hi, x.dtype))
    return np.asarray(y, x.dtype).copy()


def _variadic(fn):
    def run(node, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return np.asarray(out, np.result_type(*xs)).copy()
    return run


OPS["Max"] = _variadic(np.maximum)
OPS["Min"] = _variadic(np.minimum)
OPS["Sum"] = _variadic(np.add)


@_op("Mean")
def Mean(node, *xs):
    return (_variadic(np.add)(node, *xs) / len(xs)).astype(xs[0].dtype)


for _name, _fn in {"Equal": np.equal, "Less": np.less, "Greater": np.greater,
                   "LessOrEqual": np.less_equal, "GreaterOrEqual": np.greater_equal,
                   "And": np.logical_and, "Or": np.logical_or, "Xor": np.logical_xor}.items():
    OPS[_name] = (lambda f: lambda node, a, b: f(a, b))(_fn)


@_op("Where")
def Where(node, c, a, b):
    return np.where(c, a, b)


@_op("Cast")
def Cast(node, x):
    from onnx import helper  # only needed to map the ONNX type enum
    to = helper.tensor_dtype_to_np_dtype(int(_attr(node, "to")))
    return x.astype(to)


# ---------------------------------------------------------------------------------------------
# Normalisation and reductions

@_op("Softmax", "LogSoftmax")
def Softmax(node, x):
    axis = _attr(node, "axis", -1)
    m = x.max(axis=axis, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=axis, keepdims=True)
    if node.op == "LogSoftmax":
        return (x - m - np.log(s)).astype(x.dtype)
    return (e / s).astype(x.dtype)


@_op("LayerNormalization")
def LayerNormalization(node, x, scale, bias=None):
    axis = _attr(node, "axis", -1)
    eps = _attr(node, "epsilon", 1e-5)
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * inv * scale
    if bias is not None:
        y = y + bias
    outs = [y.astype(x.dtype)]
    if len(node.outputs) > 1:
        outs += [mean.astype(np.float32), inv.astype(np.float32)]
    return outs


@_op("BatchNormalization")
def BatchNormalization(node, x, scale, b, mean, var):
    eps = _attr(node, "epsilon", 1e-5)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(shape) \
        + b.reshape(shape)
    return y.astype(x.dtype)


@_op("InstanceNormalization")
def InstanceNormalization(node, x, scale, b):
    eps = _attr(node, "epsilon", 1e-5)
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return ((x - mean) / np.sqrt(var + eps) * scale.reshape(shape)
            + b.reshape(shape)).astype(x.dtype)


def _reduce(fn):
    def run(node, x, axes=None):
        if axes is None:
            axes = node.attrs.get("axes")
        keep = bool(_attr(node, "keepdims", 1))
        if axes is None or len(np.atleast_1d(axes)) == 0:
            if _attr(node, "noop_with_empty_axes", 0):
                return x.copy()
            axes = None
        else:
            axes = tuple(int(a) for a in np.atleast_1d(axes))
        return np.asarray(fn(x, axis=axes, keepdims=keep)).astype(x.dtype)
    return run


OPS["ReduceMean"] = _reduce(np.mean)
OPS["ReduceSum"] = _reduce(np.sum)
OPS["ReduceMax"] = _reduce(np.max)
OPS["ReduceMin"] = _reduce(np.min)
OPS["ReduceProd"] = _reduce(np.prod)
OPS["ReduceL2"] = _reduce(lambda x, axis, keepdims: np.sqrt(np.sum(
    x.astype(np.float64) ** 2, axis=axis, keepdims=keepdims)))
OPS["ReduceSumSquare"] = _reduce(lambda x, axis, keepdims: np.sum(
    x.astype(np.float64) ** 2, axis=axis, keepdims=keepdims))
OPS["ReduceLogSumExp"] = _reduce(lambda x, axis, keepdims: np.log(np.sum(
    np.exp(x.astype(np.float64)), axis=axis, keepdims=keepdims)))


@_op("ArgMax", "ArgMin")
def ArgMax(node, x):
    axis = _attr(node, "axis", 0) % x.ndim
    keep = bool(_attr(node, "keepdims", 1))
    y = -x if node.op == "ArgMin" else x
    if _attr(node, "select_last_index", 0):
        flipped = np.flip(y, axis=axis)
        idx = x.shape[axis] - 1 - np.argmax(flipped, axis=axis)
    else:
        idx = np.argmax(y, axis=axis)
    if keep:
        idx = np.expand_dims(idx, axis)
    return idx.astype(np.int64)


@_op("IsNaN")
def IsNaN(node, x):
    return np.isnan(x)


@_op("IsInf")
def IsInf(node, x):
    pos, neg = _attr(node, "detect_positive", 1), _attr(node, "detect_negative", 1)
    return (np.isposinf(x) & bool(pos)) | (np.isneginf(x) & bool(neg))


# ---------------------------------------------------------------------------------------------
# Shape and data movement

@_op("Reshape")
def Reshape(node, x, shape):
    shape = [int(s) for s in shape]
    if not _attr(node, "allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape).copy()


@_op("Flatten")
def Flatten(node, x):
    axis = _attr(node, "axis", 1) % (x.ndim + 1) if x.ndim else 0
    lead = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(lead, -1).copy()


@_op("Transpose")
def Transpose(node, x):
    perm = _attr(node, "perm", None)
    if perm is None or len(perm) == 0:
        perm = list(range(x.ndim))[::-1]
    return np.ascontiguousarray(np.transpose(x, perm))


@_op("Squeeze")
def Squeeze(node, x, axes=None):
    if axes is None:
        axes = node.attrs.get("axes")
    if axes is None:
        return np.squeeze(x).copy()
    return np.squeeze(x, axis=tuple(int(a) for a in np.atleast_1d(axes))).copy()


@_op("Unsqueeze")
def Unsqueeze(node, x, axes=None):
    if axes is None:
        axes = node.attrs.get("axes")
    axes = [int(a) for a in np.atleast_1d(axes)]
    rank = x.ndim + len(axes)
    y = x
    for a in sorted(a % rank for a in axes):
        y = np.expand_dims(y, a)
    return y.copy()


@_op("Concat")
def Concat(node, *xs):
    return np.concatenate([x for x in xs if x is not None], axis=_attr(node, "axis", 0))


@_op("Split")
def Split(node, x, split=None):
    axis = _attr(node, "axis", 0)
    if split is None:
        split = node.attrs.get("split")
    n = len(node.outputs)
    if split is None or len(split) == 0:
        num = _attr(node, "num_outputs", n)
        size = -(-x.shape[axis] // num)
        split = [min(size, x.shape[axis] - i * size) for i in range(num)]
    idx = np.cumsum([int(s) for s in split])[:-1]
    return [p.copy() for p in np.split(x, idx, axis=axis)]


@_op("Slice")
def Slice(node, x, starts, ends, axes=None, steps=None):
    axes = range(len(starts)) if axes is None else [int(a) % x.ndim for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        dim = x.shape[a]
        s, e, st = int(s), int(e), int(st)
        # Clamp as the spec says (numpy's slice clamps too, but INT64 sentinels must not wrap).
        s = max(-dim - 1, min(dim, s))
        e = max(-dim - 1, min(dim, e))
        if st < 0:
            s = dim - 1 if s >= dim else (s + dim if s < 0 else s)
            e = e + dim if e < 0 else e
            e = None if e < 0 else e
            s = max(s, -1)
        index[a] = slice(s, e, st)
    return x[tuple(index)].copy()


@_op("Pad")
def Pad(node, x, pads=None, value=None, axes=None):
    mode = _attr(node, "mode", "constant")
    if pads is None:
        pads = node.attrs.get("pads")
    pads = [int(p) for p in pads]
    axes = list(range(x.ndim)) if axes is None else [int(a) % x.ndim for a in axes]
    k = len(axes)
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[i + k])
    # Negative pads crop.
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(width))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in width]
    if mode == "constant":
        v = node.attrs.get("value", 0) if value is None else value
        v = 0 if v is None or np.size(v) == 0 else np.asarray(v).item()
        return np.pad(x, width, mode="constant", constant_values=v)
    if mode in ("reflect", "edge", "wrap"):
        return np.pad(x, width, mode=mode)
    raise UnsupportedOpError(f"Pad mode {mode!r} is not supported (constant, reflect, edge, wrap)")


@_op("Shape")
def Shape(node, x):
    start = _attr(node, "start", 0)
    end = node.attrs.get("end")
    return np.array(x.shape[start:end], np.int64)


@_op("Size")
def Size(node, x):
    return np.array(x.size, np.int64)


@_op("Gather")
def Gather(node, x, idx):
    axis = _attr(node, "axis", 0)
    idx = np.where(idx < 0, idx + x.shape[axis], idx)
    return np.take(x, idx, axis=axis)


@_op("Expand")
def Expand(node, x, shape):
    shape = np.broadcast_shapes(x.shape, tuple(int(s) for s in shape))
    return np.broadcast_to(x, shape).copy()


@_op("Tile")
def Tile(node, x, reps):
    return np.tile(x, [int(r) for r in reps])


@_op("Constant")
def Constant(node):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if node.attrs.get(key) is not None:
            v = node.attrs[key]
            if key in ("value_float", "value_floats"):
                return np.asarray(v, np.float32)
            if key in ("value_int", "value_ints"):
                return np.asarray(v, np.int64)
            return np.asarray(v)
    raise UnsupportedOpError(f"Constant node {node.name!r} has no supported value attribute")


@_op("ConstantOfShape")
def ConstantOfShape(node, shape):
    v = node.attrs.get("value")
    v = np.zeros(1, np.float32) if v is None else np.asarray(v).reshape(-1)
    return np.full([int(s) for s in shape], v[0], v.dtype)


@_op("Range")
def Range(node, start, limit, delta):
    return np.arange(start, limit, delta).astype(np.result_type(start))


@_op("DepthToSpace")
def DepthToSpace(node, x):
    b = _attr(node, "blocksize")
    n, c, h, w = x.shape
    if _attr(node, "mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b).copy()


@_op("SpaceToDepth")
def SpaceToDepth(node, x):
    b = _attr(node, "blocksize")
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b).copy()


# ---------------------------------------------------------------------------------------------
# Quantization

def _axis_shape(x, scale, axis):
    if np.ndim(scale) == 0 or np.size(scale) == 1:
        return np.asarray(scale).reshape(())
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    return np.asarray(scale).reshape(shape)


@_op("QuantizeLinear")
def QuantizeLinear(node, x, scale, zero_point=None):
    axis = _attr(node, "axis", 1)
    s = _axis_shape(x, scale, axis).astype(np.float32)
    dtype = np.uint8 if zero_point is None else zero_point.dtype
    zp = 0 if zero_point is None else _axis_shape(x, zero_point, axis).astype(np.int32)
    info = np.iinfo(dtype)
    # Round half to even, as the spec says (np.rint does that).
    q = np.rint(x.astype(np.float32) / s) + zp
    return np.clip(q, info.min, info.max).astype(dtype)


@_op("DequantizeLinear")
def DequantizeLinear(node, x, scale, zero_point=None):
    axis = _attr(node, "axis", 1)
    s = _axis_shape(x, scale, axis).astype(np.float32)
    zp = 0 if zero_point is None else _axis_shape(x, zero_point, axis).astype(np.int32)
    return ((x.astype(np.int32) - zp).astype(np.float32) * s).astype(np.float32)


# Convolution, pooling and resize live in numpy_nn.py (they register into OPS on import).
from .numpy_nn import (MaxPool, Resize, _nearest, _resize_coords, conv_pads,  # noqa: E402,F401
                       pool_output_shape)
