"""ONNX frontend: an ONNX model to a float :class:`~pyvta.compiler.ir.Graph` with static shapes.

``import_model`` walks the ONNX graph once, in order. For each node it

1. turns it into canonical opset-17 form with every attribute explicit
   (``compiler/onnx_ops.py``, one function per operator),
2. folds it into a constant when all of its inputs are constant (``Shape`` only needs its
   input's shape): this removes the ``Constant`` / ``Shape`` / ``Gather`` / ``Concat`` /
   ``Reshape`` arithmetic of real-world exports once the input shapes are fixed,
3. infers its output shapes (ONNX's per-node shape inference).

The import pass list of ``compiler/passes.py`` (BatchNormalization folding, dead-code
elimination, verification) then runs on the result.

``export_model`` turns a Graph back into an ONNX model (for onnxruntime / the reference
evaluator: calibration and tests).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from .ir import Graph, Node, Value
from .onnx_ops import CANONICAL_OPSET, ONNX_OPS, UnsupportedError, supported_ops

__all__ = ["import_model", "export_model", "FrontendError", "UnsupportedError",
           "evaluate_node", "infer_node_shapes", "parse_input_shapes", "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET, MAX_OPSET = 7, 21  # 11..21 is what real exports use; 7..10 best effort


class FrontendError(ValueError):
    """The ONNX model cannot be imported (malformed file, dynamic dims left unset...)."""


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a dev dependency
        raise FrontendError("the ONNX frontend needs the 'onnx' package (pip install onnx)") \
            from None
    return onnx


# --- Loading and input shapes ----------------------------------------------------------------

def parse_input_shapes(specs) -> dict:
    """Parse the CLI's ``--input-shape`` list: ``["x=1,3,8,8"]`` -> ``{"x": (1, 3, 8, 8)}``."""
    out = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        if not sep or not name:
            raise FrontendError(f"--input-shape {spec!r} must look like NAME=D0,D1,...")
        try:
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
        except ValueError:
            raise FrontendError(f"--input-shape {spec!r}: dims must be integers") from None
        if not shape or any(d <= 0 for d in shape):
            raise FrontendError(f"--input-shape {spec!r}: dims must be positive integers")
        out[name] = shape
    return out


def _load(model):
    onnx = _onnx()
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise FrontendError(f"ONNX model {str(path)!r} does not exist")
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf raises DecodeError / RuntimeError variants
            raise FrontendError(f"{str(path)!r} is not a readable ONNX model (truncated or "
                                f"corrupted?): {exc}") from None
    if not isinstance(model, onnx.ModelProto):
        raise FrontendError(f"expected an onnx.ModelProto or a path, not {type(model).__name__}")
    _opset(model)  # an unsupported opset is the more useful message: check it first
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise FrontendError(f"the ONNX model is malformed: {str(exc).strip().splitlines()[0]}") \
            from None
    return model


def _opset(model) -> int:
    versions = {o.domain: o.version for o in model.opset_import}
    v = versions.get("", versions.get("ai.onnx"))
    if v is None:
        raise FrontendError("the model imports no default-domain ONNX opset")
    if not MIN_OPSET <= v <= MAX_OPSET:
        raise FrontendError(f"ONNX opset {v} is not supported; expected {MIN_OPSET}..{MAX_OPSET}")
    return v


def _input_values(model, input_shapes: dict) -> list:
    onnx = _onnx()
    init_names = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in init_names]
    names = [i.name for i in graph_inputs]
    for name in input_shapes:
        if name not in names:
            raise FrontendError(f"--input-shape names {name!r}, which is not a model input; "
                                f"inputs are {names}")
    values = []
    for vi in graph_inputs:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
            if vi.name not in input_shapes:
                raise FrontendError(f"input {vi.name!r} has no shape; give one with "
                                    f"--input-shape {vi.name}=D0,D1,...")
        dims = list(tt.shape.dim) if tt.HasField("shape") else None
        user = input_shapes.get(vi.name)
        if user is not None:
            if dims is not None and len(user) != len(dims):
                raise FrontendError(f"--input-shape {vi.name}: {len(user)} dims given, the "
                                    f"model's input has rank {len(dims)}")
            for i, (u, d) in enumerate(zip(user, dims or [])):
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != u:
                    raise FrontendError(f"--input-shape {vi.name}: dim {i} is {u}, but the "
                                        f"model fixes it to {d.dim_value}")
            shape = tuple(user)
        else:
            shape = []
            for i, d in enumerate(dims):
                if d.HasField("dim_value") and d.dim_value >= 0:
                    shape.append(d.dim_value)
                else:
                    label = f" ({d.dim_param!r})" if d.dim_param else ""
                    raise FrontendError(f"input {vi.name!r} dim {i}{label} is dynamic; fix it "
                                        f"with --input-shape {vi.name}=D0,D1,...")
            shape = tuple(shape)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        values.append(Value(vi.name, shape, dtype))
    return values


# --- Per-node evaluation and shape inference -------------------------------------------------

def _attr_proto_value(v):
    """A Graph attribute value as accepted by ``onnx.helper.make_node``."""
    onnx = _onnx()
    if isinstance(v, np.ndarray):
        return onnx.numpy_helper.from_array(v)
    return v


def _node_proto(node: Node):
    onnx = _onnx()
    attrs = {k: _attr_proto_value(v) for k, v in node.attrs.items() if v is not None}
    return onnx.helper.make_node(node.op, node.inputs, node.outputs, name=node.name,
                                 domain=node.domain or None, **attrs)


def _type_proto(shape, dtype):
    onnx = _onnx()
    return onnx.helper.make_tensor_type_proto(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)),
                                              list(shape))


def evaluate_node(node: Node, inputs: dict) -> list:
    """Run one canonical node on numpy inputs with ``onnx.reference``; returns its outputs."""
    onnx = _onnx()
    from onnx.reference import ReferenceEvaluator
    graph = onnx.helper.make_graph(
        [_node_proto(node)], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype),
                                            list(a.shape))
         for n, a in inputs.items()],
        [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
         for o in node.outputs if o])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid(
        "", CANONICAL_OPSET)])
    outs = ReferenceEvaluator(model).run(None, dict(inputs))
    return [np.asarray(o) for o in outs]


def infer_node_shapes(node: Node, values: dict, consts: dict) -> list:
    """Output :class:`Value` s of one canonical node, from its inputs' types (and constants)."""
    onnx = _onnx()
    schema = onnx.defs.get_schema(node.op, CANONICAL_OPSET, node.domain or "")
    types = {i: _type_proto(values[i].shape, values[i].dtype) for i in node.inputs if i}
    data = {i: onnx.numpy_helper.from_array(consts[i], i) for i in node.inputs
            if i and i in consts and consts[i].size <= 4096}
    try:
        out = onnx.shape_inference.infer_node_outputs(
            schema, _node_proto(node), types, data,
            opset_imports=[onnx.helper.make_opsetid("", CANONICAL_OPSET)])
    except Exception as exc:
        raise FrontendError(f"node {node.name!r} ({node.op}): shape inference failed: "
                            f"{str(exc).strip().splitlines()[0]}") from None
    result = []
    for o in node.outputs:
        if not o:
            continue
        tp = out.get(o)
        ok = tp is not None and tp.tensor_type.HasField("shape") and all(
            d.HasField("dim_value") for d in tp.tensor_type.shape.dim)
        if not ok:
            return _infer_by_running(node, values, consts)
        dims = [d.dim_value for d in tp.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tp.tensor_type.elem_type)
        result.append(Value(o, dims, dtype))
    return result


def _infer_by_running(node, values, consts):
    """Fallback when ONNX's inference leaves a dim unknown: run the node on two different
    fillings of its run-time inputs. Different output shapes (or integer run-time inputs,
    which usually carry sizes) mean the shape depends on run-time values: an error."""
    runtime = [i for i in node.inputs if i and i not in consts]
    if any(values[i].dtype.kind in "iub" for i in runtime):
        raise FrontendError(f"node {node.name!r} ({node.op}): its output shape depends on the "
                            f"run-time values of {runtime}; pyvta needs static shapes (make "
                            f"those inputs constant)")
    shapes = None
    for fill in (0.0, 1.0):
        feeds = {i: consts[i] if i in consts else np.full(values[i].shape, fill, values[i].dtype)
                 for i in node.inputs if i}
        try:
            outs = evaluate_node(node, feeds)
        except Exception as exc:
            raise FrontendError(f"node {node.name!r} ({node.op}): cannot determine output "
                                f"shape: {exc}") from None
        got = [a.shape for a in outs]
        if shapes is not None and got != shapes:
            raise FrontendError(f"node {node.name!r} ({node.op}): its output shape depends on "
                                f"the run-time values of {runtime}; pyvta needs static shapes")
        shapes = got
    return [Value(o, a.shape, a.dtype) for o, a in zip([o for o in node.outputs if o], outs)]


# --- The import walk -------------------------------------------------------------------------

class _Context:
    """What an operator function may ask about the graph being imported."""

    def __init__(self, opset):
        self.opset = opset
        self.values: dict = {}
        self.consts: dict = {}
        self.node_name = ""
        self.op_type = ""
        self.outputs: list = []
        self._used: set = set()
        self._counter = 0
        self.read: set = set()      # every value some node or the graph output reads

    def is_used(self, name) -> bool:
        """Whether an (optional) output is read by anything."""
        return bool(name) and name in self.read

    def shape(self, name) -> tuple:
        if name not in self.values:
            raise FrontendError(f"node {self.node_name!r} ({self.op_type}) reads {name!r}, "
                                f"which has no known shape")
        return self.values[name].shape

    def dtype(self, name):
        return self.values[name].dtype

    def const(self, name):
        """The constant value of ``name``, or None if it is computed at run time."""
        return self.consts.get(name) if name else None

    def set_const(self, name, array):
        array = np.asarray(array)
        self.consts[name] = array
        self.values[name] = Value(name, array.shape, array.dtype)

    def fresh(self, hint) -> str:
        while True:
            self._counter += 1
            name = f"{self.node_name or 'pyvta'}/{hint}_{self._counter}"
            if name not in self._used and name not in self.values:
                self._used.add(name)
                return name

    def add_const(self, hint, array) -> str:
        name = self.fresh(hint)
        self.set_const(name, array)
        return name


def _attributes(onnx, node_proto) -> dict:
    out = {}
    for a in node_proto.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise UnsupportedError(f"node {node_proto.name!r} ({node_proto.op_type}): "
                                   f"sub-graph attribute {a.name!r} (control flow) is not "
                                   f"supported")
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, onnx.TensorProto):
            v = onnx.numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


def _call(fn, ctx, inputs, attrs):
    sig = inspect.signature(fn)
    positional = [p.name for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)][1:]
    kwargs = {}
    for k, v in attrs.items():
        # Older opsets had attributes named like today's inputs (Split `split`, Squeeze `axes`).
        kwargs[k + "_attr" if k in positional else k] = v
    keywords = {p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY}
    for k in kwargs:
        if k not in keywords:
            raise UnsupportedError(f"node {ctx.node_name!r} ({ctx.op_type}): attribute "
                                   f"{k.removesuffix('_attr')!r} is not supported; supported "
                                   f"attributes are {sorted(keywords)}")
    try:
        bound = sig.bind(ctx, *inputs, **kwargs)
    except TypeError as exc:
        raise UnsupportedError(f"node {ctx.node_name!r} ({ctx.op_type}): {exc}") from None
    return fn(*bound.args, **bound.kwargs)


#: Operators folded whenever their input's *shape* is known, even if its data is not.
_SHAPE_ONLY = {"Shape", "Size"}

#: Constant results larger than this many elements are not folded (e.g. big ConstantOfShape).
_FOLD_LIMIT = 1 << 24


def _fold_or_infer(ctx: _Context, node: Node) -> bool:
    """Fold ``node`` into constants if possible (True), else infer its output shapes (False)."""
    ins = [i for i in node.inputs if i]
    foldable = all(i in ctx.consts for i in ins) or node.op in _SHAPE_ONLY
    if foldable and node.op in _SHAPE_ONLY:
        shape = np.array(ctx.shape(node.inputs[0]), np.int64)
        if node.op == "Shape":
            result = shape[node.attrs["start"]:node.attrs["end"]]
        else:
            result = np.array(int(np.prod(shape)), np.int64)
        ctx.set_const(node.outputs[0], result)
        return True
    if foldable:
        try:
            outs = evaluate_node(node, {i: ctx.consts[i] for i in ins})
        except Exception as exc:   # onnx.reference raises whatever numpy raises
            raise FrontendError(f"node {node.name!r} ({node.op}): constant folding failed: "
                                f"{str(exc).strip().splitlines()[0] if str(exc) else exc!r}") \
                from None
        if all(o.size <= _FOLD_LIMIT for o in outs):
            for name, arr in zip([o for o in node.outputs if o], outs):
                ctx.set_const(name, arr)
            return True
    for v in infer_node_shapes(node, ctx.values, ctx.consts):
        ctx.values[v.name] = v
    return False


def import_model(model, input_shapes: dict | None = None, *, run_passes: bool = True) -> Graph:
    """Import an ONNX model (``ModelProto`` or path) as a float Graph with static shapes.

    Parameters
    ----------
    model : onnx.ModelProto | str | Path
    input_shapes : dict, optional
        ``{input name: shape}`` fixing dynamic dims (every dynamic dim must be fixed).
    run_passes : bool
        Run the import pass list (BatchNormalization folding, dead-code elimination).

    Raises
    ------
    FrontendError
        Unreadable or malformed model, unsupported opset, dynamic dim left unset.
    UnsupportedError
        An operator or attribute outside what :func:`~pyvta.compiler.onnx_ops.supported_ops`
        lists (the message names the node and its op type).
    """
    onnx = _onnx()
    model = _load(model)
    opset = _opset(model)
    input_shapes = {k: tuple(int(d) for d in v) for k, v in (input_shapes or {}).items()}
    ctx = _Context(opset)
    ctx.read = {i for n in model.graph.node for i in n.input if i} | \
        {o.name for o in model.graph.output}
    inputs = _input_values(model, input_shapes)
    for v in inputs:
        ctx.values[v.name] = v
    for t in model.graph.initializer:
        if t.name not in ctx.values:
            ctx.set_const(t.name, onnx.numpy_helper.to_array(t))
    nodes = []
    for index, proto in enumerate(model.graph.node):
        ctx.node_name = proto.name or f"{proto.op_type}_{index}"
        ctx.op_type = proto.op_type
        ctx.outputs = list(proto.output)
        if proto.domain not in ("", "ai.onnx"):
            raise UnsupportedError(f"node {ctx.node_name!r} ({proto.op_type}): operator domain "
                                   f"{proto.domain!r} is not supported (only standard ONNX)")
        fn = ONNX_OPS.get(proto.op_type)
        if fn is None:
            raise UnsupportedError(f"node {ctx.node_name!r}: operator {proto.op_type!r} is not "
                                   f"supported; supported operators are "
                                   f"{', '.join(supported_ops())}")
        emitted = _call(fn, ctx, list(proto.input), _attributes(onnx, proto))
        for k, node in enumerate(emitted):
            if k < len(emitted) - 1:
                # Node names stay unique; the prefix keeps the ONNX node traceable.
                node.name = f"{ctx.node_name}/{k}_{node.op}"
            if not _fold_or_infer(ctx, node):
                nodes.append(node)
    outputs = []
    for o in model.graph.output:
        if o.name not in ctx.values:
            raise FrontendError(f"graph output {o.name!r} is never produced")
        if o.name in ctx.consts:
            # A constant output still needs a producer for the runtime: an Identity of it.
            src = ctx.add_const("const_output", ctx.consts.pop(o.name))
            nodes.append(Node("Identity", f"{o.name}/const", [src], [o.name]))
        outputs.append(ctx.values[o.name])
    used = {i for n in nodes for i in n.inputs if i}
    initializers = {k: v for k, v in ctx.consts.items() if k in used}
    values = {k: v for k, v in ctx.values.items() if k not in ctx.consts or k in initializers}
    graph = Graph(nodes=nodes, inputs=inputs, outputs=outputs, initializers=initializers,
                  values=values, name=model.graph.name or "graph", opset=CANONICAL_OPSET)
    if run_passes:
        from .passes import run_passes as _run, IMPORT_PASSES
        graph = _run(graph, IMPORT_PASSES)
    else:
        graph.verify()
    return graph


# --- Export ----------------------------------------------------------------------------------

def export_model(graph: Graph, *, outputs=None):
    """The Graph as an ONNX ``ModelProto`` (opset 17), e.g. to run it with onnxruntime.

    ``outputs`` (value names) replaces the graph outputs, e.g. to expose intermediate values.
    """
    onnx = _onnx()
    h = onnx.helper

    def vi(v):
        return h.make_tensor_value_info(v.name, h.np_dtype_to_tensor_dtype(v.dtype), list(v.shape))

    out_values = graph.outputs if outputs is None else [graph.values[o] for o in outputs]
    inits = [onnx.numpy_helper.from_array(np.asarray(a), n) for n, a in graph.initializers.items()]
    io = {v.name for v in graph.inputs} | {v.name for v in out_values} | set(graph.initializers)
    value_info = [vi(v) for k, v in graph.values.items() if k not in io]
    g = h.make_graph([_node_proto(n) for n in graph.nodes], graph.name,
                     [vi(v) for v in graph.inputs], [vi(v) for v in out_values], inits,
                     value_info=value_info)
    opsets = [h.make_opsetid("", CANONICAL_OPSET)]
    domains = {n.domain for n in graph.nodes if n.domain}
    opsets += [h.make_opsetid(d, 1) for d in sorted(domains)]
    return h.make_model(g, opset_imports=opsets, producer_name="pyvta")
