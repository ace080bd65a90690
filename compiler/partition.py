"""Partitioning: group the quantized operators into ``pyvta.Accel`` nodes, the rest on the CPU.

Input: the quantized Graph of :func:`~pyvta.compiler.quantize.quantize`, where accelerator
operators are nodes of domain ``pyvta`` (``attrs["qop"]``) and everything else is a float ONNX
node, with ``QuantizeLinear`` / ``DequantizeLinear`` where the two meet.

1. *Capability.* A quantized node runs on the accelerator when the lowering accepts it for the
   configuration (:func:`accel_capable`); otherwise it is turned back into float ONNX nodes
   (its original ones) on the CPU.
2. *Scheduling.* The nodes are re-ordered (still topologically) so that accelerator nodes come
   in as few contiguous runs as possible: each run becomes one partition, one accelerator
   launch, with no int8 round trip through the CPU in between.
3. *Grouping.* Each run becomes one ``Accel`` node (contract item 3) whose inputs/outputs are
   the int8 values that cross the partition boundary; the partition's operators are returned as
   :class:`~pyvta.compiler.lower.program.AccelOp` lists for the lowering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .ir import Graph, Node, Value
from .lower.program import AccelOp
from .quantize import QUANT_DOMAIN

__all__ = ["Partition", "partition", "accel_capable", "ACCEL_OP"]

#: The op type of a partition node in the partitioned Graph (domain ``pyvta``).
ACCEL_OP = "Accel"


@dataclass
class Partition:
    """A run of accelerator operators that becomes one ``Accel`` node and one program."""
    index: int
    ops: list                      #: list[AccelOp] in topological order
    inputs: list                   #: int8 value names read from outside
    outputs: list                  #: int8 value names used outside
    shapes: dict = field(default_factory=dict)   #: value name -> logical shape

    @property
    def node_name(self) -> str:
        return f"accel_{self.index}"


def accel_capable(node: Node, graph: Graph, cfg=None) -> bool:
    """Whether the accelerator can run quantized ``node`` (the lowering's check, given a cfg)."""
    if node.domain != QUANT_DOMAIN or "qop" not in node.attrs:
        return False
    if cfg is None:
        return True
    try:
        from .lower import supports  # the lowering's own capability check, when it has one
    except ImportError:
        return True
    shapes = [graph.values[i].shape for i in node.inputs]
    return bool(supports(cfg, node.attrs["qop"], shapes, graph.values[node.outputs[0]].shape))


def _schedule(nodes: list, is_accel) -> list:
    """Topological order that keeps accelerator nodes together (ties: original order)."""
    index = {id(n): k for k, n in enumerate(nodes)}
    producer = {o: n for n in nodes for o in n.outputs if o}
    deps = {id(n): {id(producer[i]) for i in n.inputs if i in producer} for n in nodes}
    users: dict = {}
    for n in nodes:
        for d in deps[id(n)]:
            users.setdefault(d, []).append(n)
    waiting = {id(n): len(deps[id(n)]) for n in nodes}
    ready = [n for n in nodes if not waiting[id(n)]]
    order, kind = [], None
    while ready:
        same = [n for n in ready if is_accel(n) == kind]
        pick = min(same or ready, key=lambda n: index[id(n)])
        ready.remove(pick)
        order.append(pick)
        kind = is_accel(pick)
        for u in users.get(id(pick), []):
            waiting[id(u)] -= 1
            if not waiting[id(u)]:
                ready.append(u)
    if len(order) != len(nodes):
        raise ValueError("the graph has a cycle")
    return order


def _cpu_fallback(graph: Graph, is_accel) -> Graph:
    """Replace quantized nodes the accelerator cannot run by their float originals."""
    if all(is_accel(n) for n in graph.nodes if n.domain == QUANT_DOMAIN):
        return graph
    inits = dict(graph.initializers)
    values = dict(graph.values)
    produced = {v.name for v in graph.inputs} | set(graph.initializers)   # so far, in order
    # Float values the CPU nodes now compute directly: drop their DequantizeLinear.
    direct = {n.attrs["float_output"] for n in graph.nodes
              if n.domain == QUANT_DOMAIN and not is_accel(n)}
    nodes = []

    def qparams(name, scale):
        s, z = f"{name}/scale", f"{name}/zero_point"
        inits.setdefault(s, np.asarray(scale, np.float32))
        inits.setdefault(z, np.asarray(0, np.int8))
        values.setdefault(s, Value(s, (), np.float32))
        values.setdefault(z, Value(z, (), np.int8))
        return s, z

    for n in graph.nodes:
        if n.op == "DequantizeLinear" and (n.outputs[0] in direct or n.outputs[0] in produced):
            continue
        if n.domain != QUANT_DOMAIN or is_accel(n):
            nodes.append(n)
            produced.update(o for o in n.outputs if o)
            continue
        a = n.attrs
        for q, f, scale in zip(n.inputs, a["float_inputs"], a["in_scales"]):
            if f not in produced:
                nodes.append(Node("DequantizeLinear", f"{f}/dequantize", [q, *qparams(q, scale)],
                                  [f], {"axis": 1}))
                produced.add(f)
        for m in a["float_nodes"]:
            nodes.append(m)
            produced.update(o for o in m.outputs if o)
        inits.update(a["float_consts"])
        for k, v in a["float_values"].items():
            values.setdefault(k, v)
        q = n.outputs[0]
        nodes.append(Node("QuantizeLinear", f"{a['float_output']}/quantize",
                          [a["float_output"], *qparams(q, a["scale"])], [q],
                          {"axis": 1}))
    from .passes import eliminate_dead_code
    return eliminate_dead_code(Graph(nodes=nodes, inputs=list(graph.inputs),
                                     outputs=list(graph.outputs), initializers=inits,
                                     values=values, name=graph.name, opset=graph.opset))


def _not_worth_it(graph: Graph, runs: list) -> set:
    """Names of the quantized nodes of runs that cost more on the accelerator than on the CPU.

    The cost rule: a run without any multiply-accumulate operator (only pooling or residual
    adds) whose inputs all arrive from float CPU values (QuantizeLinear) and whose outputs all
    leave to float CPU values (DequantizeLinear) pays an int8 round trip and an accelerator
    launch for work the CPU does in one cheap pass: it stays on the CPU.
    """
    producer = graph.producer()
    consumers = graph.consumers()
    outputs = {v.name for v in graph.outputs}
    names: set = set()
    for is_run, members in runs:
        if not is_run or any(m.op in _MAC_OPS for m in members):
            continue
        inside = {id(m) for m in members}
        produced = {o for m in members for o in m.outputs}
        ins = {i for m in members for i in m.inputs if i and i not in produced}
        outs = {o for o in produced if o in outputs or any(
            id(c) not in inside for c in consumers.get(o, []))}
        if all(i in producer and producer[i].op == "QuantizeLinear" for i in ins) and \
                all(o not in outputs and all(c.op == "DequantizeLinear"
                                             for c in consumers.get(o, [])) for o in outs):
            names.update(m.name for m in members)
    return names


#: Quantized operators that do multiply-accumulate work (the accelerator's GEMM core).
_MAC_OPS = {"QConv2d", "QDense"}


def partition(graph: Graph, cfg=None, exclude=(), cost: bool = True) -> tuple:
    """Split a quantized Graph into CPU nodes and ``Accel`` nodes.

    Returns ``(partitioned graph, list[Partition])``; ``Accel`` node ``k`` has
    ``attrs={"program": k}``. Quantized nodes named in ``exclude`` go back to the CPU, and
    with ``cost`` so do runs the accelerator would not speed up (see :func:`_not_worth_it`).
    The input graph is not modified.
    """
    exclude = set(exclude)
    if cost:
        def capable(n):
            return (n.domain == QUANT_DOMAIN and "qop" in n.attrs and n.name not in exclude
                    and accel_capable(n, graph, cfg))
        runs: list = []
        for n in _schedule(list(graph.nodes), capable):
            if capable(n) and runs and runs[-1][0]:
                runs[-1][1].append(n)
            else:
                runs.append((capable(n), [n]))
        exclude |= _not_worth_it(graph, runs)

    def is_accel(n):
        return (n.domain == QUANT_DOMAIN and "qop" in n.attrs and n.name not in exclude
                and accel_capable(n, graph, cfg))

    graph = _cpu_fallback(graph, is_accel)
    order = _schedule(list(graph.nodes), is_accel)
    runs: list = []
    for n in order:
        if is_accel(n) and runs and runs[-1][0]:
            runs[-1][1].append(n)
        else:
            runs.append((is_accel(n), [n]))
    consumers = graph.consumers()
    graph_outputs = {v.name for v in graph.outputs}
    nodes, parts = [], []
    for is_run, members in runs:
        if not is_run:
            nodes.extend(members)
            continue
        inside = {id(m) for m in members}
        produced = [o for m in members for o in m.outputs]
        produced_set = set(produced)
        ext_in: list = []
        for m in members:
            for i in m.inputs:
                if i and i not in produced_set and i not in ext_in:
                    ext_in.append(i)
        ext_out = [o for o in produced if o in graph_outputs or any(
            id(c) not in inside for c in consumers.get(o, []))]
        part = Partition(len(parts), [], ext_in, ext_out)
        for m in members:
            in_shapes = [graph.values[i].shape for i in m.inputs]
            out_shape = graph.values[m.outputs[0]].shape
            part.ops.append(AccelOp(m.name, m.attrs["qop"], list(m.inputs), m.outputs[0],
                                    in_shapes, out_shape))
            for v, s in zip(list(m.inputs) + [m.outputs[0]], in_shapes + [out_shape]):
                part.shapes[v] = s
        parts.append(part)
        nodes.append(Node(ACCEL_OP, part.node_name, ext_in, ext_out,
                          {"program": part.index}, domain=QUANT_DOMAIN))
    produced = {o for n in nodes for o in n.outputs}
    used = {i for n in nodes for i in n.inputs}
    values = {k: v for k, v in graph.values.items()
              if k in produced or k in used or k in graph.initializers
              or k in {i.name for i in graph.inputs}}
    out = Graph(nodes=nodes, inputs=list(graph.inputs), outputs=list(graph.outputs),
                initializers={k: v for k, v in graph.initializers.items() if k in used},
                values=values, name=graph.name, opset=graph.opset)
    out.verify()
    return out, parts
