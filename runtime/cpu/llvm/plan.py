"""What a planned node is: :class:`NodePlan`, plus the helpers every planner shares."""

from __future__ import annotations

import numpy as np

from .program import Program
from .renderer import collapse, render_copy_runs, render_elementwise

__all__ = ["NodePlan", "BoundCall", "F", "COPY_TYPES"]

F = np.dtype(np.float32)


class NodePlan:
    """Executes one node: a list of compiled steps writing preallocated outputs."""

    def __init__(self, outputs, steps, kernels=0):
        self.outputs = outputs          #: output arrays (reused across calls)
        self.steps = steps              #: callables ``step(inputs)``
        self.kernels = kernels          #: number of compiled kernels used

    def __call__(self, inputs):
        for step in self.steps:
            step(inputs)
        return self.outputs


def _contig(shape):
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return tuple(reversed(strides))


def _bcast_strides(in_shape, out_shape):
    """Element strides of a contiguous ``in_shape`` broadcast to ``out_shape``."""
    pad = (1,) * (len(out_shape) - len(in_shape)) + tuple(in_shape)
    st = _contig(pad)
    return tuple(0 if d == 1 and o != 1 else s for d, o, s in zip(pad, out_shape, st))


def _attr(node, name, default=None):
    v = node.attrs.get(name, default)
    return default if v is None else v


def _arr(a):
    if type(a) is np.ndarray and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a)


class BoundCall:
    """``prog(*outputs, *inputs)`` for a step, remembering the buffer addresses while the same
    input objects come back (a session passes the same buffers at every run): the per-call
    Python cost of a memory-bound kernel is then a few identity checks and the ctypes call.

    Only inputs used in place (contiguous arrays, whose data never moves) or immutable
    scalars are remembered; an input that had to be copied is converted again at each call.
    """

    def __init__(self, prog, outputs):
        self._prog = prog
        self._outputs = list(outputs)
        self._inputs = None        # the input objects of the remembered call
        self._ptrs = None
        self._keep = None          # the converted arrays the remembered addresses point into

    def __call__(self, inputs) -> None:
        last = self._inputs
        if last is not None and len(last) == len(inputs):
            # (a plain loop: a generator in all() costs a microsecond, 2 % of a 50 us kernel)
            for a, b in zip(inputs, last):
                if a is not b:
                    break
            else:
                self._prog.call_ptrs(self._ptrs)
                return
        conv = [_arr(x) for x in inputs]
        ptrs = self._prog.pointers(self._outputs + conv)
        if all(c is x or isinstance(x, (np.generic, float, int)) for c, x in zip(conv, inputs)):
            self._inputs, self._ptrs, self._keep = tuple(inputs), ptrs, conv
        else:
            self._inputs = self._ptrs = self._keep = None
        self._prog.call_ptrs(ptrs)


def _copy_plan(out, parts):
    """``parts``: list of (input index, out view offset, out strides, shape, in offset, in strides)."""
    parts = [p for p in parts if int(np.prod(p[3], dtype=np.int64)) > 0]
    runs = []
    for idx, ooff, ostr, shape, ioff, istr in parts:
        cshape, (co, ci) = collapse(tuple(shape), [tuple(ostr), tuple(istr)])
        if len(cshape) == 1 and co == (1,) and ci == (1,):
            runs.append((idx, ooff, ioff, cshape[0]))
    if len(parts) > 1 and len(runs) == len(parts):
        # Every part is one contiguous run (Concat/Split on the outermost axes): one call.
        prog = Program(render_copy_runs([(o, i, n) for _, o, i, n in runs], out.dtype))
        order = [idx for idx, _, _, _ in runs]
        call = BoundCall(prog, [out.reshape(-1)])

        def runs_step(ins):
            call([ins[k] for k in order])
        return NodePlan([out], [runs_step], 1)
    progs = []
    for idx, ooff, ostr, shape, ioff, istr in parts:
        if int(np.prod(shape, dtype=np.int64)) == 0:
            continue
        kern = render_elementwise(shape, ostr, out.dtype, [(istr, ioff, out.dtype)], None,
                                  out_offset=ooff)
        progs.append((idx, BoundCall(Program(kern), [out.reshape(-1)])))

    def step(ins):
        for idx, call in progs:
            call([ins[idx]])
    return NodePlan([out], [step], len(progs))


COPY_TYPES = {np.dtype(t) for t in (np.float32, np.int8, np.uint8, np.int32, np.int64)}
