"""ONNX operators understood by the frontend: one function per operator, named as in ONNX.

Each function receives the import context and the ONNX node's inputs, with the node's
attributes as keyword arguments whose defaults are the ONNX specification's. It returns the
node(s) of the *canonical form*: the operator as defined at opset 17 (``CANONICAL_OPSET``),
with every attribute explicit. Opset-version differences are resolved here (``ctx.opset`` is
the model's opset), e.g. ``Clip`` min/max move from attributes (< 11) to inputs, ``Squeeze``
axes from an attribute (< 13) to an input, ``Reduce*`` axes from an input (>= 18) back to an
attribute, ``auto_pad`` becomes explicit ``pads``, ``Reshape`` gets its resolved target shape.

An attribute the function does not name is rejected by Python itself (``TypeError``), which
the frontend turns into an "unsupported attribute" error naming the node.
"""

from __future__ import annotations

import numpy as np

from .ir import Node

__all__ = ["CANONICAL_OPSET", "ONNX_OPS", "supported_ops", "UnsupportedError"]

#: The opset whose operator definitions the imported Graph follows.
CANONICAL_OPSET = 17

#: name -> function; filled by the ``@op`` decorator below.
ONNX_OPS: dict = {}


class UnsupportedError(ValueError):
    """An operator, attribute or attribute value the frontend cannot represent."""


def supported_ops() -> list:
    """The sorted list of ONNX operator types the frontend imports."""
    return sorted(ONNX_OPS)


def op(fn):
    """Register ``fn`` as the import function of the ONNX operator of the same name."""
    ONNX_OPS[fn.__name__] = fn
    return fn


def _node(ctx, op_type, inputs, outputs=None, **attrs):
    return Node(op=op_type, name=ctx.node_name, inputs=list(inputs),
                outputs=list(ctx.outputs if outputs is None else outputs), attrs=attrs)


def _unsupported(ctx, what):
    raise UnsupportedError(f"node {ctx.node_name!r} ({ctx.op_type}): {what}")


def _spatial_pads(ctx, x_shape, kernel, strides, dilations, pads, auto_pad, *, ceil_mode=0):
    """Explicit ONNX ``pads`` (begins then ends) for a sliding-window operator."""
    nsp = len(kernel)
    if auto_pad in ("NOTSET", b"NOTSET"):
        return list(pads) if pads is not None else [0] * (2 * nsp)
    if auto_pad == "VALID":
        return [0] * (2 * nsp)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        _unsupported(ctx, f"auto_pad={auto_pad!r}; expected NOTSET, VALID, SAME_UPPER or "
                     f"SAME_LOWER")
    begins, ends = [], []
    for i in range(nsp):
        size = x_shape[2 + i]
        out = -(-size // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else big)
        ends.append(big if auto_pad == "SAME_UPPER" else small)
    return begins + ends


# --- Convolution, dense, pooling -------------------------------------------------------------

@op
def Conv(ctx, x, w, b="", *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    w_shape = ctx.shape(w)
    kernel = list(kernel_shape) if kernel_shape is not None else list(w_shape[2:])
    nsp = len(kernel)
    strides = list(strides) if strides is not None else [1] * nsp
    dilations = list(dilations) if dilations is not None else [1] * nsp
    pads = _spatial_pads(ctx, ctx.shape(x), kernel, strides, dilations, pads, auto_pad)
    inputs = [x, w] + ([b] if b else [])
    return [_node(ctx, "Conv", inputs, auto_pad="NOTSET", dilations=dilations, group=int(group),
                  kernel_shape=kernel, pads=pads, strides=strides)]


@op
def ConvTranspose(ctx, x, w, b="", *, auto_pad="NOTSET", dilations=None, group=1,
                  kernel_shape=None, output_padding=None, output_shape=None, pads=None,
                  strides=None):
    kernel = list(kernel_shape) if kernel_shape is not None else list(ctx.shape(w)[2:])
    nsp = len(kernel)
    strides = list(strides) if strides is not None else [1] * nsp
    dilations = list(dilations) if dilations is not None else [1] * nsp
    output_padding = list(output_padding) if output_padding is not None else [0] * nsp
    x_shape = ctx.shape(x)
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # Spec: total_padding = stride*(in-1) + output_padding + ((k-1)*d+1) - out.
        out = (list(output_shape)[-nsp:] if output_shape is not None
               else [x_shape[2 + i] * strides[i] for i in range(nsp)])
        begins, ends = [], []
        for i in range(nsp):
            total = (strides[i] * (x_shape[2 + i] - 1) + output_padding[i]
                     + (kernel[i] - 1) * dilations[i] + 1 - out[i])
            if auto_pad == "SAME_LOWER":
                begins.append(total - total // 2)
                ends.append(total // 2)
            else:
                begins.append(total // 2)
                ends.append(total - total // 2)
        pads = begins + ends
    elif auto_pad == "VALID" or pads is None:
        pads = [0] * (2 * nsp)
    inputs = [x, w] + ([b] if b else [])
    return [_node(ctx, "ConvTranspose", inputs, auto_pad="NOTSET", dilations=dilations,
                  group=int(group), kernel_shape=kernel, output_padding=output_padding,
                  pads=list(pads), strides=strides)]


@op
def Gemm(ctx, a, b, c="", *, alpha=1.0, beta=1.0, transA=0, transB=0):
    inputs = [a, b] + ([c] if c else [])
    return [_node(ctx, "Gemm", inputs, alpha=float(alpha), beta=float(beta), transA=int(transA),
                  transB=int(transB))]


def _pool_common(ctx, x, kernel_shape, strides, pads, auto_pad, dilations, ceil_mode):
    if kernel_shape is None:
        _unsupported(ctx, "kernel_shape is required")
    kernel = list(kernel_shape)
    nsp = len(kernel)
    strides = list(strides) if strides is not None else [1] * nsp
    dilations = list(dilations) if dilations is not None else [1] * nsp
    pads = _spatial_pads(ctx, ctx.shape(x), kernel, strides, dilations, pads, auto_pad,
                         ceil_mode=ceil_mode)
    return kernel, strides, dilations, pads


@op
def MaxPool(ctx, x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None,
            pads=None, storage_order=0, strides=None):
    kernel, strides, dilations, pads = _pool_common(ctx, x, kernel_shape, strides, pads,
                                                    auto_pad, dilations, ceil_mode)
    return [_node(ctx, "MaxPool", [x], auto_pad="NOTSET", ceil_mode=int(ceil_mode),
                  dilations=dilations, kernel_shape=kernel, pads=pads,
                  storage_order=int(storage_order), strides=strides)]


@op
def AveragePool(ctx, x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                kernel_shape=None, pads=None, strides=None):
    kernel, strides, dilations, pads = _pool_common(ctx, x, kernel_shape, strides, pads,
                                                    auto_pad, dilations, ceil_mode)
    if any(d != 1 for d in dilations):
        _unsupported(ctx, f"dilations={dilations} (only 1 is supported for AveragePool)")
    return [_node(ctx, "AveragePool", [x], auto_pad="NOTSET", ceil_mode=int(ceil_mode),
                  count_include_pad=int(count_include_pad), kernel_shape=kernel, pads=pads,
                  strides=strides)]


@op
def GlobalAveragePool(ctx, x):
    return [_node(ctx, "GlobalAveragePool", [x])]


@op
def GlobalMaxPool(ctx, x):
    return [_node(ctx, "GlobalMaxPool", [x])]


@op
def BatchNormalization(ctx, x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9,
                       spatial=1, training_mode=0, is_test=None, consumed_inputs=None):
    if int(training_mode) or any(ctx.is_used(o) for o in ctx.outputs[1:]):
        _unsupported(ctx, "training mode (running statistics outputs) is not supported")
    if int(spatial) != 1:
        _unsupported(ctx, f"spatial={spatial} (only 1 is supported)")
    return [_node(ctx, "BatchNormalization", [x, scale, bias, mean, var], ctx.outputs[:1],
                  epsilon=float(epsilon), momentum=float(momentum), training_mode=0)]


@op
def LayerNormalization(ctx, x, scale, bias="", *, axis=-1, epsilon=1e-5, stash_type=1):
    if any(ctx.is_used(o) for o in ctx.outputs[1:]):
        _unsupported(ctx, "Mean / InvStdDev outputs are not supported")
    inputs = [x, scale] + ([bias] if bias else [])
    return [_node(ctx, "LayerNormalization", inputs, ctx.outputs[:1], axis=int(axis),
                  epsilon=float(epsilon), stash_type=int(stash_type))]


# --- Activations -----------------------------------------------------------------------------

def _simple(name):
    """An operator with inputs only and no attributes, kept as it is."""
    def fn(ctx, *inputs):
        return [_node(ctx, name, inputs)]
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"ONNX ``{name}`` (no attributes)."
    return op(fn)


for _name in ("Relu", "Sigmoid", "Tanh", "HardSwish", "Softsign", "Softplus", "Abs", "Neg",
              "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil", "Erf", "Sin", "Cos", "Sign",
              "Not", "Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater",
              "LessOrEqual", "GreaterOrEqual", "And", "Or", "Where", "Max", "Min", "Sum",
              "Mean", "MatMul", "PRelu", "Expand", "Tile", "Size", "Range", "Identity",
              "IsNaN", "Round", "Tan", "Xor"):
    _simple(_name)


@op
def Clip(ctx, x, lo="", hi="", *, min=None, max=None):
    if ctx.opset < 11:
        # min/max were attributes with defaults -/+ FLT_MAX; make them constant inputs.
        lo = ctx.add_const("min", np.array(-3.4028234663852886e38 if min is None else min,
                                           np.float32))
        hi = ctx.add_const("max", np.array(3.4028234663852886e38 if max is None else max,
                                           np.float32))
    elif min is not None or max is not None:
        _unsupported(ctx, "min/max attributes at opset >= 11")
    inputs = [x, lo, hi]
    while inputs and not inputs[-1]:
        inputs.pop()
    return [_node(ctx, "Clip", inputs)]


@op
def LeakyRelu(ctx, x, *, alpha=0.01):
    return [_node(ctx, "LeakyRelu", [x], alpha=float(alpha))]


@op
def Elu(ctx, x, *, alpha=1.0):
    return [_node(ctx, "Elu", [x], alpha=float(alpha))]


@op
def Selu(ctx, x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    return [_node(ctx, "Selu", [x], alpha=float(alpha), gamma=float(gamma))]


@op
def HardSigmoid(ctx, x, *, alpha=0.2, beta=0.5):
    return [_node(ctx, "HardSigmoid", [x], alpha=float(alpha), beta=float(beta))]


@op
def Gelu(ctx, x, *, approximate="none"):
    # Gelu appears at opset 20; the canonical opset 17 spells it with Erf (or Tanh).
    s = ctx.fresh
    half = ctx.add_const("half", np.array(0.5, np.float32))
    one = ctx.add_const("one", np.array(1.0, np.float32))
    if approximate == "none":
        k = ctx.add_const("rsqrt2", np.array(1 / np.sqrt(2.0), np.float32))
        t1, t2, t3, t4 = s("t"), s("t"), s("t"), s("t")
        return [_node(ctx, "Mul", [x, k], [t1]), _node(ctx, "Erf", [t1], [t2]),
                _node(ctx, "Add", [t2, one], [t3]), _node(ctx, "Mul", [x, t3], [t4]),
                _node(ctx, "Mul", [t4, half])]
    if approximate == "tanh":
        c = ctx.add_const("c", np.array(0.044715, np.float32))
        k = ctx.add_const("k", np.array(np.sqrt(2 / np.pi), np.float32))
        three = ctx.add_const("three", np.array(3.0, np.float32))
        t = [s("t") for _ in range(7)]
        return [_node(ctx, "Pow", [x, three], [t[0]]), _node(ctx, "Mul", [t[0], c], [t[1]]),
                _node(ctx, "Add", [x, t[1]], [t[2]]), _node(ctx, "Mul", [t[2], k], [t[3]]),
                _node(ctx, "Tanh", [t[3]], [t[4]]), _node(ctx, "Add", [t[4], one], [t[5]]),
                _node(ctx, "Mul", [x, t[5]], [t[6]]), _node(ctx, "Mul", [t[6], half])]
    _unsupported(ctx, f"approximate={approximate!r}; expected 'none' or 'tanh'")


def _softmax_like(name):
    def fn(ctx, x, *, axis=None):
        rank = len(ctx.shape(x))
        if ctx.opset < 13:
            # Before opset 13 the input was coerced to 2-D at `axis` (default 1).
            ax = 1 if axis is None else int(axis)
            ax = ax + rank if ax < 0 else ax
            if ax == rank - 1:
                return [_node(ctx, name, [x], axis=-1)]
            shape = ctx.shape(x)
            flat = ctx.add_const("shape2d", np.array(
                [int(np.prod(shape[:ax])), int(np.prod(shape[ax:]))], np.int64))
            back = ctx.add_const("shape", np.array(shape, np.int64))
            t0, t1 = ctx.fresh("flat"), ctx.fresh("soft")
            return [_node(ctx, "Reshape", [x, flat], [t0], allowzero=0),
                    _node(ctx, name, [t0], [t1], axis=1),
                    _node(ctx, "Reshape", [t1, back], allowzero=0)]
        return [_node(ctx, name, [x], axis=-1 if axis is None else int(axis))]
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"ONNX ``{name}`` (axis default -1 from opset 13, 1 with 2-D coercion before)."
    return op(fn)


_softmax_like("Softmax")
_softmax_like("LogSoftmax")


# --- Shape and data movement -----------------------------------------------------------------

@op
def Constant(ctx, *, value=None, value_float=None, value_floats=None, value_int=None,
             value_ints=None, value_string=None, value_strings=None, sparse_value=None):
    if value is not None:
        arr = np.asarray(value)
    elif value_float is not None:
        arr = np.array(value_float, np.float32)
    elif value_floats is not None:
        arr = np.array(value_floats, np.float32)
    elif value_int is not None:
        arr = np.array(value_int, np.int64)
    elif value_ints is not None:
        arr = np.array(value_ints, np.int64)
    else:
        _unsupported(ctx, "only numeric tensor/float/int values are supported")
    ctx.set_const(ctx.outputs[0], arr)
    return []


@op
def ConstantOfShape(ctx, shape, *, value=None):
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(1)
    return [_node(ctx, "ConstantOfShape", [shape], value=value)]


@op
def Shape(ctx, x, *, start=0, end=None):
    rank = len(ctx.shape(x))
    return [_node(ctx, "Shape", [x], start=int(start), end=rank if end is None else int(end))]


@op
def Cast(ctx, x, *, to, saturate=1):
    return [_node(ctx, "Cast", [x], to=int(to))]


@op
def Reshape(ctx, x, shape, *, allowzero=0):
    target = ctx.const(shape)
    if target is None:
        _unsupported(ctx, "the target shape must be constant once shapes are fixed")
    in_shape = ctx.shape(x)
    dims = [int(d) for d in target]
    if not allowzero:
        dims = [in_shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if dims.count(-1) > 1:
        _unsupported(ctx, f"shape {dims} has more than one -1")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        total = int(np.prod(in_shape))
        if known == 0 or total % known:
            _unsupported(ctx, f"cannot reshape {tuple(in_shape)} to {dims}")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != int(np.prod(in_shape)):
        _unsupported(ctx, f"cannot reshape {tuple(in_shape)} to {dims}")
    resolved = ctx.add_const("shape", np.array(dims, np.int64))
    return [_node(ctx, "Reshape", [x, resolved], allowzero=0)]


@op
def Flatten(ctx, x, *, axis=1):
    return [_node(ctx, "Flatten", [x], axis=int(axis))]


@op
def Transpose(ctx, x, *, perm=None):
    rank = len(ctx.shape(x))
    perm = list(perm) if perm is not None else list(range(rank))[::-1]
    return [_node(ctx, "Transpose", [x], perm=perm)]


@op
def Concat(ctx, *inputs, axis):
    return [_node(ctx, "Concat", [i for i in inputs if i], axis=int(axis))]


@op
def Split(ctx, x, split="", *, axis=0, split_attr=None, num_outputs=None):
    dim = ctx.shape(x)[int(axis)]
    n = len(ctx.outputs)
    if split_attr is not None:          # opset < 13: `split` attribute (renamed by the frontend)
        sizes = list(split_attr)
    elif split:
        if ctx.const(split) is None:
            _unsupported(ctx, "split sizes must be constant")
        sizes = [int(v) for v in ctx.const(split)]
    else:                               # equal parts; the last may be smaller (opset 18)
        chunk = -(-dim // n)
        sizes = [min(chunk, dim - i * chunk) for i in range(n)]
    s = ctx.add_const("split", np.array(sizes, np.int64))
    return [_node(ctx, "Split", [x, s], axis=int(axis))]


def _axes_input(ctx, axes_attr, axes_input, name):
    if axes_attr is not None:
        return ctx.add_const("axes", np.array(list(axes_attr), np.int64))
    if axes_input and ctx.const(axes_input) is None:
        _unsupported(ctx, f"{name} axes must be constant")
    return axes_input


@op
def Squeeze(ctx, x, axes="", *, axes_attr=None):
    a = _axes_input(ctx, axes_attr, axes, "Squeeze")
    return [_node(ctx, "Squeeze", [x] + ([a] if a else []))]


@op
def Unsqueeze(ctx, x, axes="", *, axes_attr=None):
    a = _axes_input(ctx, axes_attr, axes, "Unsqueeze")
    return [_node(ctx, "Unsqueeze", [x, a])]


@op
def Slice(ctx, x, starts="", ends="", axes="", steps="", *, starts_attr=None, ends_attr=None,
          axes_attr=None):
    if starts_attr is not None:         # opset < 10: attributes
        starts = ctx.add_const("starts", np.array(list(starts_attr), np.int64))
        ends = ctx.add_const("ends", np.array(list(ends_attr), np.int64))
        if axes_attr is not None:
            axes = ctx.add_const("axes", np.array(list(axes_attr), np.int64))
    if not starts or not ends:
        _unsupported(ctx, "starts and ends are required")
    n = len(ctx.const(starts)) if ctx.const(starts) is not None else None
    if n is not None and not axes:
        axes = ctx.add_const("axes", np.arange(n, dtype=np.int64))
    if n is not None and not steps:
        steps = ctx.add_const("steps", np.ones(n, np.int64))
    inputs = [x, starts, ends, axes, steps]
    while not inputs[-1]:
        inputs.pop()
    return [_node(ctx, "Slice", inputs)]


@op
def Gather(ctx, data, indices, *, axis=0):
    return [_node(ctx, "Gather", [data, indices], axis=int(axis))]


@op
def Pad(ctx, x, pads="", constant_value="", axes="", *, mode="constant", pads_attr=None,
        value=0.0):
    rank = len(ctx.shape(x))
    if pads and ctx.const(pads) is None:
        _unsupported(ctx, "pads must be constant (the output shape depends on them)")
    if axes and ctx.const(axes) is None:
        _unsupported(ctx, "axes must be constant")
    if pads_attr is not None:           # opset < 11
        pads = ctx.add_const("pads", np.array(list(pads_attr), np.int64))
        if value:
            constant_value = ctx.add_const("value", np.array(value, ctx.dtype(x)))
    if axes:                            # opset 18: pads only for `axes`; expand to all axes
        ax = [int(a) % rank for a in ctx.const(axes)]
        p = [int(v) for v in ctx.const(pads)]
        full = [0] * (2 * rank)
        for i, a in enumerate(ax):
            full[a], full[a + rank] = p[i], p[i + len(ax)]
        pads = ctx.add_const("pads", np.array(full, np.int64))
    if mode not in ("constant", "reflect", "edge"):
        _unsupported(ctx, f"mode={mode!r}; expected constant, reflect or edge")
    inputs = [x, pads] + ([constant_value] if constant_value else [])
    return [_node(ctx, "Pad", inputs, mode=mode)]


@op
def Resize(ctx, x, roi="", scales="", sizes="", *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    if antialias or axes is not None or keep_aspect_ratio_policy != "stretch":
        _unsupported(ctx, "antialias / axes / keep_aspect_ratio_policy (opset 18) are not "
                     "supported")
    return [_node(ctx, "Resize", [x, roi, scales, sizes],
                  coordinate_transformation_mode=coordinate_transformation_mode,
                  cubic_coeff_a=float(cubic_coeff_a), exclude_outside=int(exclude_outside),
                  extrapolation_value=float(extrapolation_value), mode=mode,
                  nearest_mode=nearest_mode)]


@op
def Dropout(ctx, x, ratio="", training_mode="", *, seed=None, is_test=None, ratio_attr=None):
    if any(ctx.is_used(o) for o in ctx.outputs[1:]):
        _unsupported(ctx, "the mask output is not supported (inference only)")
    return [_node(ctx, "Identity", [x], ctx.outputs[:1])]


def _reduce(name, axes_input_from):
    """Reduce operators; canonical opset 17 has ``axes`` as an attribute except ReduceSum."""
    def fn(ctx, x, axes="", *, axes_attr=None, keepdims=1, noop_with_empty_axes=0):
        rank = len(ctx.shape(x))
        ax = []
        if axes_attr is not None:
            ax = list(axes_attr)
        elif axes:
            if ctx.const(axes) is None:
                _unsupported(ctx, "axes must be constant")
            ax = [int(a) for a in ctx.const(axes)]
        if not ax:      # no (or empty) axes: every axis, or nothing with noop_with_empty_axes
            if noop_with_empty_axes:
                return [_node(ctx, "Identity", [x])]
            ax = list(range(rank))
        ax = [a % rank for a in ax]
        if name == "ReduceSum":
            a = ctx.add_const("axes", np.array(ax, np.int64))
            return [_node(ctx, name, [x, a], keepdims=int(keepdims), noop_with_empty_axes=0)]
        return [_node(ctx, name, [x], axes=ax, keepdims=int(keepdims))]
    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"ONNX ``{name}`` (axes attribute before opset {axes_input_from}, input after)."
    return op(fn)


for _name in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
              "ReduceSumSquare", "ReduceLogSumExp"):
    _reduce(_name, 18)
_reduce("ReduceSum", 13)


@op
def ArgMax(ctx, x, *, axis=0, keepdims=1, select_last_index=0):
    return [_node(ctx, "ArgMax", [x], axis=int(axis), keepdims=int(keepdims),
                  select_last_index=int(select_last_index))]


@op
def ArgMin(ctx, x, *, axis=0, keepdims=1, select_last_index=0):
    return [_node(ctx, "ArgMin", [x], axis=int(axis), keepdims=int(keepdims),
                  select_last_index=int(select_last_index))]


@op
def Mod(ctx, a, b, *, fmod=0):
    return [_node(ctx, "Mod", [a, b], fmod=int(fmod))]


@op
def IsInf(ctx, x, *, detect_negative=1, detect_positive=1):
    return [_node(ctx, "IsInf", [x], detect_negative=int(detect_negative),
                  detect_positive=int(detect_positive))]


@op
def DepthToSpace(ctx, x, *, blocksize, mode="DCR"):
    if mode not in ("DCR", "CRD"):
        _unsupported(ctx, f"mode={mode!r}; expected DCR or CRD")
    return [_node(ctx, "DepthToSpace", [x], blocksize=int(blocksize), mode=mode)]


@op
def SpaceToDepth(ctx, x, *, blocksize):
    return [_node(ctx, "SpaceToDepth", [x], blocksize=int(blocksize))]


@op
def InstanceNormalization(ctx, x, scale, bias, *, epsilon=1e-5):
    return [_node(ctx, "InstanceNormalization", [x, scale, bias], epsilon=float(epsilon))]


@op
def Mish(ctx, x):
    # Mish appears at opset 18; opset 17 spells it x * tanh(softplus(x)).
    t1, t2 = ctx.fresh("softplus"), ctx.fresh("tanh")
    return [_node(ctx, "Softplus", [x], [t1]), _node(ctx, "Tanh", [t1], [t2]),
            _node(ctx, "Mul", [x, t2])]


@op
def Upsample(ctx, x, scales="", *, mode="nearest", scales_attr=None, height_scale=None,
             width_scale=None):
    # Deprecated since opset 10; it is Resize with the "asymmetric" coordinate transform.
    if scales_attr is not None:
        scales = ctx.add_const("scales", np.array(list(scales_attr), np.float32))
    elif not scales:
        _unsupported(ctx, "scales are required")
    if mode not in ("nearest", "linear", "bilinear"):
        _unsupported(ctx, f"mode={mode!r}; expected nearest or linear")
    return [_node(ctx, "Resize", [x, "", scales, ""],
                  coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75,
                  exclude_outside=0, extrapolation_value=0.0,
                  mode="nearest" if mode == "nearest" else "linear", nearest_mode="floor")]
