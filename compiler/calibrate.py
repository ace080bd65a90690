"""Calibration: load sample inputs and measure the float model's activation ranges.

Calibration data is one array per model input, samples along axis 0, given as a ``.npz`` file
keyed by input name, a folder of ``.npy`` files, or a dict. :func:`activation_ranges` runs the
float Graph (onnxruntime when present, else the numpy CPU operators) on every sample and
returns, per value, the absolute range ``amax`` the quantizer maps to 127.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .ir import Graph

__all__ = ["CalibrationError", "load_calibration", "random_calibration", "iter_batches",
           "activation_ranges", "entropy_threshold", "run_float", "METHODS"]

#: Range estimators: ``minmax`` (largest |x| seen), ``percentile`` (the 99.99th percentile of
#: |x|, which ignores rare outliers) and ``entropy`` (the clipping threshold whose 128-level
#: quantized histogram is closest to the real one in KL divergence, as TensorRT does).
METHODS = ("minmax", "percentile", "entropy")


class CalibrationError(ValueError):
    """Calibration data missing, malformed or not matching the model's inputs."""


def _as_dict(data, graph: Graph) -> dict:
    if isinstance(data, dict):
        return {k: np.asarray(v) for k, v in data.items()}
    path = Path(data)
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise CalibrationError(f"calibration folder {str(path)!r} has no .npy files")
        named = {f.stem: f for f in files}
        names = [v.name for v in graph.inputs]
        if all(n in named for n in names):
            return {n: np.load(named[n]) for n in names}
        if len(names) == 1:
            # One file per sample (or per batch of samples) of the single input.
            arrays = [np.load(f) for f in files]
            shape = graph.inputs[0].shape
            arrays = [a[None] if a.shape == shape[1:] or a.shape == shape else a for a in arrays]
            try:
                return {names[0]: np.concatenate(arrays)}
            except ValueError as exc:
                raise CalibrationError(f"calibration folder {str(path)!r}: .npy files do not "
                                       f"stack: {exc}") from None
        raise CalibrationError(f"calibration folder {str(path)!r} needs one NAME.npy per model "
                               f"input; inputs are {names}")
    if not path.is_file():
        raise CalibrationError(f"calibration data {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                names = [v.name for v in graph.inputs]
                if len(names) != 1:
                    raise CalibrationError(f"{str(path)!r} is a single array but the model has "
                                           f"inputs {names}; use an .npz keyed by input name")
                return {names[0]: np.asarray(z)}
            return {k: z[k] for k in z.files}
    except CalibrationError:
        raise
    except Exception as exc:
        raise CalibrationError(f"cannot read calibration data {str(path)!r}: {exc}") from None


def load_calibration(data, graph: Graph) -> dict:
    """Calibration samples per graph input, each ``(S,) + sample shape``, checked against the graph.

    A sample is either a whole input (array shape ``(S,) + input shape``) or one item of the
    input's batch (array shape ``(S,) + input shape[1:]``; grouped into batches).
    """
    arrays = _as_dict(data, graph)
    out = {}
    count = None
    for v in graph.inputs:
        if v.name not in arrays:
            raise CalibrationError(f"calibration data has no array for model input {v.name!r} "
                                   f"(has {sorted(arrays)})")
        a = np.asarray(arrays[v.name])
        if a.shape[1:] == v.shape:
            batches = a
        elif len(v.shape) >= 1 and a.shape[1:] == v.shape[1:]:
            b = v.shape[0]
            if len(a) < b:
                raise CalibrationError(f"calibration input {v.name!r}: {len(a)} samples, fewer "
                                       f"than one batch of {b}")
            a = a[:len(a) - len(a) % b]
            batches = a.reshape((-1,) + v.shape)
        else:
            raise CalibrationError(f"calibration input {v.name!r} has shape {a.shape}; expected "
                                   f"(S,) + {v.shape} or (S,) + {v.shape[1:]}")
        if not np.all(np.isfinite(batches)):
            raise CalibrationError(f"calibration input {v.name!r} contains NaN or infinity")
        out[v.name] = batches.astype(v.dtype)
        count = len(batches) if count is None else min(count, len(batches))
    return {k: a[:count] for k, a in out.items()}


def random_calibration(graph: Graph, samples: int = 16, seed: int = 0) -> dict:
    """The documented fallback without calibration data: uniform [-1, 1) inputs (with a warning)."""
    print(f"pyvta: WARNING: no calibration data given; calibrating on {samples} random inputs "
          f"uniform in [-1, 1). Activation ranges (and accuracy) will not match real data: pass "
          f"--calib FILE.npz", file=sys.stderr)
    rng = np.random.default_rng(seed)
    return {v.name: rng.uniform(-1, 1, (samples,) + v.shape).astype(v.dtype) for v in graph.inputs}


def iter_batches(calib: dict):
    """Yield one feed dict per calibration batch."""
    count = min(len(a) for a in calib.values())
    for i in range(count):
        yield {k: a[i] for k, a in calib.items()}


class _FloatRunner:
    """Runs the float graph returning every float value (onnxruntime, else numpy operators)."""

    def __init__(self, graph: Graph, names):
        self.graph = graph
        self.names = list(names)
        self.session = None
        try:
            import onnxruntime as ort
            from .frontend import export_model
            model = export_model(graph, outputs=self.names)
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(model.SerializeToString(), opts,
                                                providers=["CPUExecutionProvider"])
        except ImportError:
            self.session = None

    def __call__(self, feeds: dict) -> dict:
        if self.session is not None:
            return dict(zip(self.names, self.session.run(self.names, feeds)))
        from ..runtime.cpu.numpy_ops import run_node
        env = dict(self.graph.initializers)
        env.update(feeds)
        for n in self.graph.nodes:
            outs = run_node(n, [env[i] if i else None for i in n.inputs])
            env.update({o: a for o, a in zip(n.outputs, outs) if o})
        return {k: env[k] for k in self.names}


def run_float(graph: Graph, feeds: dict, names=None) -> dict:
    """Run the float graph once; returns the requested values (default: the graph outputs)."""
    names = [v.name for v in graph.outputs] if names is None else names
    return _FloatRunner(graph, names)(feeds)


def activation_ranges(graph: Graph, calib: dict, method: str = "minmax",
                      percentile: float = 99.99, keep: int = 1 << 20, progress=None) -> dict:
    """``{value name: amax}`` for every float activation of ``graph`` over the calibration set."""
    if method not in METHODS:
        raise CalibrationError(f"calibration method {method!r} is unknown; expected one of "
                               f"{', '.join(METHODS)}")
    names = [v.name for v in graph.inputs] + [o for n in graph.nodes for o in n.outputs
                                              if o and graph.values[o].dtype.kind == "f"]
    runner = _FloatRunner(graph, names)
    amax = {n: 0.0 for n in names}
    samples: dict = {n: [] for n in names}
    rng = np.random.default_rng(0)
    count = min(len(a) for a in calib.values())
    for i, feeds in enumerate(iter_batches(calib)):
        outs = runner(feeds)
        for n in names:
            a = np.abs(np.asarray(outs[n], np.float32)).ravel()
            amax[n] = max(amax[n], float(a.max()) if a.size else 0.0)
            if method in ("percentile", "entropy"):
                per_sample = max(1, keep // count)
                samples[n].append(a if a.size <= per_sample else rng.choice(a, per_sample))
        if progress and (i + 1) % 50 == 0:
            progress(f"calibrate: {i + 1}/{count} samples")
    if method == "percentile":
        for n in names:
            amax[n] = float(np.percentile(np.concatenate(samples[n]), percentile))
    elif method == "entropy":
        for n in names:
            amax[n] = entropy_threshold(np.concatenate(samples[n]), amax[n])
    return amax


def entropy_threshold(abs_values: np.ndarray, amax: float, bins: int = 2048, levels: int = 128,
                      step: int = 16) -> float:
    """Clipping threshold of ``|x|`` minimising KL(P || Q), Q being P quantized to ``levels``.

    P is the histogram clipped at the candidate threshold (the tail folded into its last bin);
    Q spreads each of the ``levels`` merged bins evenly over its non-empty source bins.
    Candidates are every ``step`` bins from ``levels`` up to all of them.
    """
    if amax <= 0 or abs_values.size == 0:
        return float(amax)
    hist, edges = np.histogram(abs_values, bins=bins, range=(0.0, amax))
    hist = hist.astype(np.float64)
    best, best_kl = bins, np.inf
    for i in range(levels, bins + 1, step):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        chunks = np.array_split(np.arange(i), levels)
        q = np.zeros(i)
        for idx in chunks:
            nz = idx[hist[idx] > 0]
            if nz.size:
                q[nz] = hist[idx].sum() / nz.size
        mask = p > 0
        ps, qs = p / p.sum(), q / max(q.sum(), 1e-30)
        kl = float(np.sum(ps[mask] * np.log(ps[mask] / np.maximum(qs[mask], 1e-12))))
        if kl < best_kl:
            best, best_kl = i, kl
    return float(edges[best])
