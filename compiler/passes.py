"""Graph passes. Each pass is ``fn(graph) -> graph`` with a one-line docstring.

``IMPORT_PASSES`` lists, in order, what ``import_model`` runs after its folding walk;
``run_passes`` applies a list and verifies the graph after each pass (so a broken pass is
caught where it happens, not three passes later).
"""

from __future__ import annotations

import numpy as np

from .ir import Graph, Node, Value

__all__ = ["fold_constants", "infer_shapes", "fold_batchnorm", "eliminate_dead_code",
           "dense_as_conv1x1", "remove_identity", "activation_before_maxpool", "IMPORT_PASSES", "QUANTIZE_PASSES", "run_passes"]


def fold_constants(graph: Graph) -> Graph:
    """Replace nodes whose inputs are all constants by their results."""
    from .frontend import evaluate_node
    consts = dict(graph.initializers)
    keep = []
    outputs = {v.name for v in graph.outputs}
    for n in graph.nodes:
        ins = [i for i in n.inputs if i]
        if ins and all(i in consts for i in ins) and not n.domain \
                and not any(o in outputs for o in n.outputs):
            for name, arr in zip([o for o in n.outputs if o],
                                 evaluate_node(n, {i: consts[i] for i in ins})):
                consts[name] = arr
                graph.values[name] = Value(name, arr.shape, arr.dtype)
        else:
            keep.append(n)
    graph.nodes = keep
    graph.initializers = consts
    return eliminate_dead_code(graph)


def infer_shapes(graph: Graph) -> Graph:
    """Recompute every node output's static type from the inputs (after a rewrite)."""
    from .frontend import infer_node_shapes
    for n in graph.nodes:
        if n.domain:
            continue  # pyvta operators carry their output types already
        for v in infer_node_shapes(n, graph.values, graph.initializers):
            graph.values[v.name] = v
    return graph


def _affine(graph: Graph, bn: Node, scale, shift) -> list:
    """``x * scale + shift`` per channel (axis 1), as Mul and Add nodes."""
    x = bn.inputs[0]
    rank = len(graph.values[x].shape)
    bshape = (scale.size,) + (1,) * (rank - 2)
    s_name, b_name, mid = f"{bn.name}/scale", f"{bn.name}/shift", f"{bn.name}/scaled"
    dtype = graph.values[x].dtype
    graph.initializers[s_name] = scale.reshape(bshape).astype(dtype)
    graph.initializers[b_name] = shift.reshape(bshape).astype(dtype)
    graph.values[s_name] = Value(s_name, bshape, dtype)
    graph.values[b_name] = Value(b_name, bshape, dtype)
    graph.values[mid] = Value(mid, graph.values[x].shape, dtype)
    return [Node("Mul", f"{bn.name}/mul", [x, s_name], [mid]),
            Node("Add", f"{bn.name}/add", [mid, b_name], list(bn.outputs))]


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold inference BatchNormalization into the preceding Conv, else into a Mul+Add affine."""
    producer = graph.producer()
    consumers = graph.consumers()
    out_names = {v.name for v in graph.outputs}
    replaced: dict = {}       # id(node) -> replacement list
    for bn in graph.nodes:
        if bn.op != "BatchNormalization" or bn.domain:
            continue
        params = [graph.initializers.get(i) for i in bn.inputs[1:5]]
        if any(p is None for p in params):
            continue  # statistics computed at run time: leave it to the CPU
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)
        scale = gamma / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        shift = beta - mean * scale
        x = bn.inputs[0]
        conv = producer.get(x)
        if (conv is not None and conv.op == "Conv" and len(consumers.get(x, [])) == 1
                and x not in out_names and conv.inputs[1] in graph.initializers
                and (len(conv.inputs) < 3 or not conv.inputs[2]
                     or conv.inputs[2] in graph.initializers)
                and len(consumers.get(conv.inputs[1], [])) == 1):
            w = graph.initializers[conv.inputs[1]]
            b = (graph.initializers[conv.inputs[2]].astype(np.float64)
                 if len(conv.inputs) > 2 and conv.inputs[2] else np.zeros(w.shape[0]))
            w_name, b_name = f"{conv.name}/w_bn", f"{conv.name}/b_bn"
            graph.initializers[w_name] = (w.astype(np.float64) * scale.reshape(
                (-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
            graph.initializers[b_name] = (b * scale + shift).astype(w.dtype)
            graph.values[w_name] = Value(w_name, w.shape, w.dtype)
            graph.values[b_name] = Value(b_name, (w.shape[0],), w.dtype)
            conv.inputs = [conv.inputs[0], w_name, b_name]
            conv.outputs = list(bn.outputs)
            replaced[id(bn)] = []
        else:
            replaced[id(bn)] = _affine(graph, bn, scale, shift)
    if replaced:
        nodes = []
        for n in graph.nodes:
            nodes.extend(replaced.get(id(n), [n]))
        graph.nodes = nodes
    return eliminate_dead_code(graph)


def eliminate_dead_code(graph: Graph) -> Graph:
    """Drop nodes, initializers and value types nothing (transitively) reads."""
    live = {v.name for v in graph.outputs}
    keep = []
    for n in reversed(graph.nodes):
        if any(o in live for o in n.outputs if o):
            keep.append(n)
            live.update(i for i in n.inputs if i)
    graph.nodes = keep[::-1]
    graph.initializers = {k: v for k, v in graph.initializers.items() if k in live}
    produced = {o for n in graph.nodes for o in n.outputs if o}
    names = produced | set(graph.initializers) | {v.name for v in graph.inputs}
    graph.values = {k: v for k, v in graph.values.items() if k in names}
    return graph


def dense_as_conv1x1(graph: Graph) -> Graph:
    """Rewrite ``Flatten(x: N,C,1,1) -> Gemm`` as ``Conv 1x1 -> Flatten`` (NCHW stays on chip)."""
    consumers = graph.consumers()
    out_names = {v.name for v in graph.outputs}
    replace: dict = {}
    for flat in graph.nodes:
        if flat.op not in ("Flatten", "Reshape") or flat.domain:
            continue
        x, y = flat.inputs[0], flat.outputs[0]
        xs, ys = graph.values[x].shape, graph.values[y].shape
        if len(xs) != 4 or xs[2:] != (1, 1) or ys != xs[:2] or y in out_names:
            continue
        users = consumers.get(y, [])
        if len(users) != 1 or users[0].op != "Gemm":
            continue
        gemm = users[0]
        a = gemm.attrs
        w = graph.initializers.get(gemm.inputs[1])
        c = graph.initializers.get(gemm.inputs[2]) if len(gemm.inputs) > 2 and gemm.inputs[2] \
            else np.zeros(1, np.float32)
        if a["transA"] or w is None or c is None or c.size not in (1, w.shape[1 - a["transB"]]):
            continue
        w = (w if a["transB"] else w.T) * a["alpha"]
        bias = np.broadcast_to(c.reshape(-1) * a["beta"], (w.shape[0],)).astype(w.dtype)
        w_name, b_name, mid = f"{gemm.name}/w1x1", f"{gemm.name}/b1x1", f"{gemm.name}/conv_out"
        graph.initializers[w_name] = w.reshape(w.shape + (1, 1)).astype(w.dtype)
        graph.initializers[b_name] = bias
        graph.values[w_name] = Value(w_name, w.shape + (1, 1), w.dtype)
        graph.values[b_name] = Value(b_name, bias.shape, w.dtype)
        out = gemm.outputs[0]
        graph.values[mid] = Value(mid, (xs[0], w.shape[0], 1, 1), graph.values[out].dtype)
        conv = Node("Conv", gemm.name, [x, w_name, b_name], [mid],
                    {"auto_pad": "NOTSET", "dilations": [1, 1], "group": 1,
                     "kernel_shape": [1, 1], "pads": [0, 0, 0, 0], "strides": [1, 1]})
        flat2 = Node("Flatten", flat.name, [mid], [out], {"axis": 1})
        replace[id(flat)] = []
        replace[id(gemm)] = [conv, flat2]
    if replace:
        graph.nodes = [m for n in graph.nodes for m in replace.get(id(n), [n])]
    return eliminate_dead_code(graph)


def remove_identity(graph: Graph) -> Graph:
    """Bypass Identity nodes (Dropout at inference becomes one) unless they make a graph output."""
    outputs = {v.name for v in graph.outputs}
    rename: dict = {}
    keep = []
    for n in graph.nodes:
        n.inputs = [rename.get(i, i) for i in n.inputs]
        if n.op == "Identity" and not n.domain and n.outputs[0] not in outputs:
            rename[n.outputs[0]] = n.inputs[0]
            continue
        keep.append(n)
    graph.nodes = keep
    return eliminate_dead_code(graph)


def activation_before_maxpool(graph: Graph) -> Graph:
    """Swap ``MaxPool -> Relu/Clip`` to ``Relu/Clip -> MaxPool`` (monotonic: same result), so
    the activation fuses into the convolution before the pooling."""
    consumers = graph.consumers()
    outputs = {v.name for v in graph.outputs}
    for k, pool in enumerate(graph.nodes):
        if pool.op != "MaxPool" or pool.domain or len([o for o in pool.outputs if o]) != 1:
            continue
        y = pool.outputs[0]
        users = consumers.get(y, [])
        if y in outputs or len(users) != 1 or users[0].op not in ("Relu", "Clip") \
                or users[0].inputs[0] != y:
            continue
        act = users[0]
        if any(i and i not in graph.initializers for i in act.inputs[1:]):
            continue  # Clip bounds computed at run time
        x, z = pool.inputs[0], act.outputs[0]
        mid = f"{act.name}/before_pool"
        graph.values[mid] = Value(mid, graph.values[x].shape, graph.values[x].dtype)
        act.inputs = [x] + act.inputs[1:]
        act.outputs = [mid]
        pool.inputs = [mid]
        pool.outputs = [z]
        i = graph.nodes.index(act)
        graph.nodes[k], graph.nodes[i] = act, pool
    return eliminate_dead_code(graph)


#: What ``quantize`` expects to have run (accelerator-friendly rewrites), in order.
QUANTIZE_PASSES = [dense_as_conv1x1, activation_before_maxpool, eliminate_dead_code]

#: What ``import_model`` runs after its folding / shape-inference walk, in order.
IMPORT_PASSES = [remove_identity, fold_batchnorm, eliminate_dead_code]


def run_passes(graph: Graph, passes, verify: bool = True) -> Graph:
    """Apply ``passes`` in order, verifying the graph after each one."""
    if verify:
        graph.verify()
    for p in passes:
        graph = p(graph)
        if verify:
            graph.verify()
    return graph
