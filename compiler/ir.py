"""The compiler's graph IR: an ONNX graph with every shape known and every attribute explicit.

The frontend (``compiler/frontend.py``) produces a :class:`Graph` from an ONNX model; passes
rewrite it; the CPU fallback executes its nodes with ONNX semantics; the partitioner hands
accelerator-capable regions to the lowering.

Contract
--------
* ``Node.op`` is the ONNX operator type (``"Conv"``, ``"Relu"``...) or a pyvta operator
  (``"pyvta.QConv2d"``...; see ``compiler/qops.py``) with ``domain`` set accordingly.
* ``Node.attrs`` holds **every** attribute of the operator with the ONNX spec's default filled in,
  as plain Python values (ints, floats, strings, lists, numpy arrays for tensors).
* ``Node.inputs`` / ``Node.outputs`` are value names (``""`` for an omitted optional input).
* ``Graph.values`` maps every value name to its static :class:`Value` (shape and numpy dtype).
* ``Graph.initializers`` maps constant names to numpy arrays.
* ``Graph.nodes`` is in topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Value", "Node", "Graph", "IrError"]


class IrError(ValueError):
    """The graph is malformed (unknown value, cycle, shape mismatch)."""


@dataclass
class Value:
    """A tensor's static type."""
    name: str
    shape: tuple
    dtype: np.dtype

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)
        self.dtype = np.dtype(self.dtype)


@dataclass
class Node:
    """One operator application."""
    op: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    domain: str = ""

    def __repr__(self):
        return f"Node({self.op} {self.name!r}: {self.inputs} -> {self.outputs})"


@dataclass
class Graph:
    """A whole model: nodes in topological order plus typed inputs, outputs and constants."""
    nodes: list
    inputs: list            # list[Value]
    outputs: list           # list[Value]
    initializers: dict      # name -> np.ndarray
    values: dict            # name -> Value
    name: str = "graph"
    opset: int = 17

    def producer(self) -> dict:
        """Map value name -> node that produces it."""
        return {o: n for n in self.nodes for o in n.outputs}

    def consumers(self) -> dict:
        """Map value name -> list of nodes that read it."""
        out: dict = {}
        for n in self.nodes:
            for i in n.inputs:
                if i:
                    out.setdefault(i, []).append(n)
        return out

    def verify(self) -> None:
        """Check names, topological order and that every value has a type."""
        known = {v.name for v in self.inputs} | set(self.initializers)
        for v in self.inputs:
            if v.name not in self.values:
                raise IrError(f"graph input {v.name!r} has no type")
        for n in self.nodes:
            for i in n.inputs:
                if i and i not in known:
                    raise IrError(f"node {n.name!r} ({n.op}) reads {i!r}, which is not produced "
                                  f"before it")
            for o in n.outputs:
                if o in known:
                    raise IrError(f"value {o!r} is produced twice (again by node {n.name!r})")
                if o and o not in self.values:
                    raise IrError(f"node {n.name!r} ({n.op}) output {o!r} has no shape")
                known.add(o)
        for v in self.outputs:
            if v.name not in known:
                raise IrError(f"graph output {v.name!r} is never produced")
