"""Execute a :class:`~pyvta.compiler.ir.Graph` on the CPU, node by node, in graph order.

Each node runs on compiled LLVM kernels when :mod:`.llvm.ops` covers it (planned once, at the
first call, with buffers reused afterwards) and on :mod:`.numpy_ops` otherwise. Reshape-like
nodes are zero-copy views. ``pyvta.Accel`` nodes are handed to a callback supplied by the
runtime session.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from . import numpy_ops
from .llvm.compiler import llvm_available

__all__ = ["CpuExecutor", "VIEW_OPS", "resolve_backend"]

#: Operators that only change the shape of a contiguous buffer.
VIEW_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")

_NOTICE_SHOWN = False


def resolve_backend(backend: str | None = None) -> str:
    """``"llvm"`` or ``"numpy"``: the requested (or ``PYVTA_CPU_BACKEND``) CPU backend.

    ``"auto"`` picks LLVM when llvmlite is importable and prints a one-line notice otherwise.
    """
    global _NOTICE_SHOWN
    backend = backend or os.environ.get("PYVTA_CPU_BACKEND", "auto")
    if backend not in ("auto", "llvm", "numpy"):
        raise ValueError(f"CPU backend must be 'auto', 'llvm' or 'numpy', not {backend!r}")
    if backend == "llvm" and not llvm_available():
        raise RuntimeError("the 'llvm' CPU backend needs llvmlite: pip install llvmlite")
    if backend == "auto":
        if llvm_available():
            return "llvm"
        if not _NOTICE_SHOWN:
            print("pyvta: llvmlite not found, the CPU fallback runs on numpy", file=sys.stderr)
            _NOTICE_SHOWN = True
        return "numpy"
    return backend


class CpuExecutor:
    """Runs every node of ``graph`` on the CPU.

    Parameters
    ----------
    graph : Graph
    backend : {"auto", "llvm", "numpy"}, optional
    accel : callable, optional
        ``accel(node, inputs) -> outputs`` for ``pyvta.Accel`` nodes.
    """

    def __init__(self, graph, backend: str | None = None, accel=None):
        self.graph = graph
        self.backend = resolve_backend(backend)
        self.accel = accel
        self._plans: dict = {}
        #: seconds per node name of the last :meth:`run`
        self.node_times: dict = {}
        #: node name -> "llvm" / "numpy" / "view" / "accel", filled as nodes are planned
        self.node_backend: dict = {}

    def _value_type(self, name):
        v = self.graph.values.get(name)
        if v is not None:
            return v.shape, v.dtype
        if name in self.graph.initializers:
            a = self.graph.initializers[name]
            return a.shape, a.dtype
        return None, None

    def _plan(self, node):
        if node.name in self._plans:
            return self._plans[node.name]
        plan = None
        kind = "numpy"
        if node.op == "Accel":
            kind = "accel"
        elif node.op in VIEW_OPS and node.domain in ("", "ai.onnx"):
            kind = "view"
        elif self.backend == "llvm":
            from .llvm.ops import plan_node
            shapes, dtypes = zip(*[self._value_type(i) if i else (None, None)
                                   for i in node.inputs]) if node.inputs else ((), ())
            consts = {k: self.graph.initializers[i] for k, i in enumerate(node.inputs)
                      if i in self.graph.initializers}
            if all(s is not None for s, i in zip(shapes, node.inputs) if i):
                plan = plan_node(node, shapes, dtypes, consts)
            if plan is not None:
                kind = "llvm"
        self._plans[node.name] = plan
        self.node_backend[node.name] = kind
        return plan

    def prepare(self) -> None:
        """Plan (render, compile or load from cache) every node now rather than on first use."""
        for node in self.graph.nodes:
            self._plan(node)

    def run_node(self, node, inputs: list) -> list:
        """Run one node on its input arrays (``None`` for omitted inputs)."""
        plan = self._plan(node)
        kind = self.node_backend[node.name]
        if kind == "accel":
            if self.accel is None:
                raise RuntimeError(f"node {node.name!r} is an accelerator partition but this "
                                   f"executor has no accelerator")
            return self.accel(node, inputs)
        if kind == "view":
            out_shape = self._value_type(node.outputs[0])[0]
            if out_shape is not None:
                return [np.ascontiguousarray(inputs[0]).reshape(out_shape)]
            return numpy_ops.run_node(node, inputs)
        if plan is not None:
            return plan(inputs)
        return numpy_ops.run_node(node, inputs)

    def run(self, feeds: dict, outputs=None) -> dict:
        """Execute the graph on ``feeds`` and return ``{output name: array}``.

        Output arrays may be buffers the executor reuses: copy them to keep them past the
        next call.
        """
        env = dict(self.graph.initializers)
        env.update(feeds)
        self.node_times = {}
        for node in self.graph.nodes:
            ins = [env[i] if i else None for i in node.inputs]
            t0 = time.perf_counter()
            outs = self.run_node(node, ins)
            self.node_times[node.name] = time.perf_counter() - t0
            for name, val in zip(node.outputs, outs):
                if name:
                    env[name] = val
        wanted = outputs or [v.name for v in self.graph.outputs]
        return {name: env[name] for name in wanted}
