"""An ``onnx.backend`` over the CPU fallback, for ONNX's conformance tests.

``prepare`` imports the model with the pyvta frontend (``compiler/frontend.py``: float
:class:`~pyvta.compiler.ir.Graph`, static shapes, canonical opset-17 nodes) and runs it with
:class:`~pyvta.runtime.cpu.executor.CpuExecutor` (LLVM kernels, numpy for the rest).

The ONNX node tests are written at the newest opset. When a model declares an opset newer than
the frontend reads, but every operator it uses has the same definition at the frontend's newest
opset, the declaration is lowered to that opset (the model means the same); otherwise it is
rejected with the frontend's error.
"""

from __future__ import annotations

import numpy as np

from onnx.backend.base import Backend, BackendRep

__all__ = ["PyvtaBackend", "PyvtaRep", "prepare", "run_model", "supports_device",
           "lower_opset_if_equivalent"]


def lower_opset_if_equivalent(model, max_opset: int):
    """Return ``model`` with its default-domain opset lowered to ``max_opset`` when none of
    its operators changed between the two opsets (else return it unchanged)."""
    import onnx
    from onnx import defs
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset <= max_opset:
        return model
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            return model
        try:
            new = defs.get_schema(node.op_type, opset).since_version
            old = defs.get_schema(node.op_type, max_opset).since_version
        except Exception:       # operator unknown at the older opset
            return model
        if new != old and not _same_signature(defs.get_schema(node.op_type, opset),
                                              defs.get_schema(node.op_type, max_opset)):
            return model
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    for o in lowered.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max_opset
    return lowered


def _same_signature(a, b) -> bool:
    """Two versions of an operator schema with the same inputs, outputs and attributes
    (names and defaults): they differ only in the element types they allow (e.g. newer opsets
    adding float8/int4), so a model using the common types means the same under both."""
    def sig(s):
        return ([(i.name, i.option) for i in s.inputs], [(o.name, o.option) for o in s.outputs],
                sorted((k, str(v.default_value)) for k, v in s.attributes.items()))
    return sig(a) == sig(b)


class PyvtaRep(BackendRep):
    """A prepared model: the imported graph and its CPU executor."""

    def __init__(self, graph, backend=None):
        from .cpu.executor import CpuExecutor
        self.graph = graph
        self.executor = CpuExecutor(graph, backend=backend)
        self.input_names = [v.name for v in graph.inputs]

    def run(self, inputs, **kwargs):
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = dict(zip(self.input_names, inputs))
        feeds = {k: np.asarray(v) for k, v in feeds.items()}
        out = self.executor.run(feeds)
        return [np.array(out[v.name], copy=True) for v in self.graph.outputs]


class PyvtaBackend(Backend):
    """``onnx.backend.base.Backend`` running models on the pyvta CPU fallback."""

    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        return device == "CPU"

    @classmethod
    def supports_device(cls, device):
        return device == "CPU"

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        from ..compiler.frontend import MAX_OPSET, import_model
        super().prepare(model, device, **kwargs)
        model = lower_opset_if_equivalent(model, MAX_OPSET)
        graph = import_model(model, kwargs.get("input_shapes"))
        return PyvtaRep(graph, backend=kwargs.get("cpu_backend"))

    @classmethod
    def run_model(cls, model, inputs, device="CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device="CPU", outputs_info=None, **kwargs):
        raise NotImplementedError("PyvtaBackend runs whole models (use run_model)")


prepare = PyvtaBackend.prepare
run_model = PyvtaBackend.run_model
supports_device = PyvtaBackend.supports_device
