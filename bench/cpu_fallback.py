"""Benchmark every LLVM CPU-fallback kernel against numpy and onnxruntime.

Each case is one ONNX node on a realistic shape (MobileNet / ResNet / ViT feature maps). It runs
three ways on the same inputs: the compiled LLVM kernel (``runtime/cpu/llvm``), the numpy
implementation of the same operator (``runtime/cpu/numpy_ops.py``, the fallback where llvmlite
is missing) and onnxruntime on a single-node model. Printed side by side with ratios; then
the floors (no kernel slower than numpy, median within 2x of onnxruntime) and the first-run
compile time against the cached second run.

Timing (``--interleave``). The default, ``block``, times each contestant the way the runtime
calls a kernel: back to back. A round gives every contestant one block of calls; before each
block the bench sleeps ``--settle`` seconds so the previous contestant's threads go idle
(OpenBLAS's worker keeps spinning on a CPU for about 0.12 s after numpy's last call, measured
on this machine; onnxruntime's workers spin between the calls of its own block as they do in
use, and sleep in ``call`` mode; the LLVM pool's workers sleep after
0.5 ms), then calls the contestant untimed for ``--lead-ms`` (the CPUs need time to get
back to speed after a pause: on the project's 2-core VM the caller's CPU needed about 2 ms,
but the other CPU, idle while the previous contestants ran on one thread, took 30-40 ms of
work: a 200K-element Add split in two ran at 42, 34, 31, 27, 25 and 24 us in the first six
5 ms windows after a 0.25 s pause and settled at 21 us, while on one thread it ran at
32 us from the first window; docs/runtime.md), then times at least ``--block`` calls and ``--block-ms`` of
work, each call separately. The block order rotates from round to round so a burst of load
from other processes hits everyone alike. ``call`` is the older per-call interleaving: every
round calls each contestant once, in a rotating order; there a kernel that runs right after
numpy finds OpenBLAS's spinning worker on the other CPU, which never happens when a CPU
partition runs. Either way the table shows each contestant's median over all timed calls
and the ratios of the medians and of the best (minimum) times; a kernel counts as slower
than numpy when its median is.

    python bench/cpu_fallback.py [--interleave block|call] [--repeat N] [--block 5]
                                 [--block-ms 20] [--lead-ms 50] [--settle 0.25]
                                 [--filter Conv] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def _pin_threads_early():
    """``--threads`` must reach OpenBLAS (numpy's matmul) before numpy is imported."""
    for k, arg in enumerate(sys.argv):
        value = None
        if arg == "--threads" and k + 1 < len(sys.argv):
            value = sys.argv[k + 1]
        elif arg.startswith("--threads="):
            value = arg.split("=", 1)[1]
        if value:
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "PYVTA_THREADS"):
                os.environ[var] = value


_pin_threads_early()
import numpy as np  # noqa: E402


def cases():
    """(label, op, attrs, inputs, n_outputs); inputs after the first are constants."""
    rng = np.random.default_rng(0)

    def f(*s):
        return rng.standard_normal(s).astype(np.float32)

    fm = f(1, 64, 56, 56)             # ResNet stage-1 feature map
    big = f(1, 32, 112, 112)          # MobileNet first feature map
    q = rng.integers(-128, 128, (1, 64, 56, 56)).astype(np.int8)
    out = [
        ("Add 64x56x56", "Add", {}, [fm, f(1, 64, 56, 56)], 1),
        ("Mul per-channel", "Mul", {}, [fm, f(1, 64, 1, 1)], 1),
        ("Sub scalar", "Sub", {}, [fm, np.float32(0.5)], 1),
        ("Div scalar", "Div", {}, [fm, np.float32(3.0)], 1),
        ("Relu 32x112x112", "Relu", {}, [big], 1),
        ("Clip 0..6", "Clip", {}, [big, np.float32(0), np.float32(6)], 1),
        ("LeakyRelu", "LeakyRelu", {"alpha": 0.1}, [big], 1),
        ("HardSigmoid", "HardSigmoid", {"alpha": 0.2, "beta": 0.5}, [big], 1),
        ("HardSwish", "HardSwish", {}, [big], 1),
        ("Sigmoid", "Sigmoid", {}, [big], 1),
        ("Tanh", "Tanh", {}, [big], 1),
        ("Exp", "Exp", {}, [big], 1),
        ("Erf", "Erf", {}, [big], 1),
        ("Gelu (ViT 197x3072)", "Gelu", {}, [f(1, 197, 3072)], 1),
        ("Softmax attn 12x197x197", "Softmax", {"axis": -1}, [f(1, 12, 197, 197)], 1),
        ("LayerNorm 197x768", "LayerNormalization", {"axis": -1, "epsilon": 1e-5},
         [f(1, 197, 768), f(768), f(768)], 1),
        ("MaxPool 3x3/2 stem", "MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                           "pads": [1, 1, 1, 1]}, [f(1, 64, 112, 112)], 1),
        ("AveragePool 3x3/1", "AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
         [f(1, 256, 14, 14)], 1),
        ("GlobalAveragePool 1280x7x7", "GlobalAveragePool", {}, [f(1, 1280, 7, 7)], 1),
        ("Resize nearest 2x", "Resize", {"mode": "nearest"},
         [f(1, 128, 28, 28), None, np.array([1, 1, 2, 2], np.float32)], 1),
        ("Resize linear 2x", "Resize", {"mode": "linear"},
         [f(1, 128, 28, 28), None, np.array([1, 1, 2, 2], np.float32)], 1),
        ("Concat channels", "Concat", {"axis": 1}, [fm, f(1, 64, 56, 56)], 1),
        ("Split channels", "Split", {"axis": 1, "num_outputs": 2}, [fm], 2),
        ("Slice crop", "Slice", {}, [fm, np.array([4, 4]), np.array([52, 52]),
                                     np.array([2, 3])], 1),
        ("Transpose NCHW->NHWC", "Transpose", {"perm": [0, 2, 3, 1]}, [fm], 1),
        ("Pad 1", "Pad", {"mode": "constant"}, [fm, np.array([0, 0, 1, 1, 0, 0, 1, 1])], 1),
        ("MatMul 197x768x768", "MatMul", {}, [f(1, 197, 768), f(768, 768)], 1),
        ("Gemm FC 1280->1000", "Gemm", {"transB": 1}, [f(1, 1280), f(1000, 1280), f(1000)], 1),
        ("Conv 3x3 64->64 56x56", "Conv", {"pads": [1, 1, 1, 1]},
         [fm, f(64, 64, 3, 3) * 0.05, f(64)], 1),
        ("Conv 1x1 256->1024 14x14", "Conv", {}, [f(1, 256, 14, 14), f(1024, 256, 1, 1) * 0.05,
                                                 f(1024)], 1),
        ("Conv 7x7/2 stem 3->64", "Conv", {"strides": [2, 2], "pads": [3, 3, 3, 3]},
         [f(1, 3, 224, 224), f(64, 3, 7, 7) * 0.05, f(64)], 1),
        ("Conv depthwise 3x3 144x56x56", "Conv", {"group": 144, "pads": [1, 1, 1, 1]},
         [f(1, 144, 56, 56), f(144, 1, 3, 3), f(144)], 1),
        ("QuantizeLinear", "QuantizeLinear", {}, [fm, np.float32(0.02), np.int8(0)], 1),
        ("DequantizeLinear", "DequantizeLinear", {}, [q, np.float32(0.02), np.int8(0)], 1),
    ]
    return out


class Timing:
    """How contestants are timed: ``mode`` "block" (back-to-back calls in blocks, with a
    settle pause between blocks) or "call" (one call each per round); ``rounds``;
    ``block`` and ``block_ms``: a block's minimum timed calls and minimum timed work in
    milliseconds; ``settle``: the pause before each block in seconds; ``lead_ms``: untimed
    calls of the block's contestant after the pause (at least one), because the CPUs come
    back from a pause slowly (measured: after 0.25 s idle a one-thread 256^3 matmul took
    2.5-3x its time on the first call, and about 2 ms of work to get back to speed; a CPU
    left idle while the others ran one-thread blocks took 30-40 ms), which never happens
    to kernels that run back to back."""

    def __init__(self, mode="block", rounds=None, block=5, block_ms=20.0, settle=0.25,
                 lead_ms=50.0):
        if mode not in ("block", "call"):
            raise ValueError(f"interleave must be 'block' or 'call', not {mode!r}")
        if rounds is None:
            rounds = 10 if mode == "block" else 40
        for name, value, low in (("repeat", rounds, 1), ("block", block, 1),
                                 ("block-ms", block_ms, 0), ("settle", settle, 0),
                                 ("lead-ms", lead_ms, 0)):
            if value < low:
                raise ValueError(f"--{name} must be at least {low}, not {value}")
        self.mode, self.rounds, self.block = mode, rounds, block
        self.block_ms, self.settle, self.lead_ms = block_ms, settle, lead_ms

    def describe(self) -> str:
        if self.mode == "call":
            return f"per-call interleaving, {self.rounds} rounds of one call each"
        return (f"blocks of back-to-back calls ({self.settle:g} s settle, {self.lead_ms:g} ms "
                f"of untimed lead-in calls, then at least {self.block} timed calls and "
                f"{self.block_ms:g} ms), {self.rounds} rounds")


def _race(contestants, timing, rounds_out=None):
    """Time ``contestants`` (name -> callable) as ``timing`` says, in an order rotated from
    round to round. Returns name -> (median seconds, best seconds) over all timed calls.
    ``rounds_out`` (a dict), if given, receives name -> each round's median (the contestants
    of one round run within a second of each other, so they met the same machine)."""
    names = list(contestants)
    warm = {}
    for name in names:
        # Warm-up (buffers, OpenBLAS/onnxruntime threads, caches): one call in the per-call
        # mode (as it always was); in the block mode also an estimate of one call, the
        # median of at least 3 calls and block_ms, to size the blocks.
        fn = contestants[name]
        if timing.mode == "call":
            fn()
            continue
        time.sleep(timing.settle)
        fn()
        spent, t_end = [], time.perf_counter() + timing.block_ms * 1e-3
        while len(spent) < 3 or (time.perf_counter() < t_end and len(spent) < 1000):
            t0 = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - t0)
        warm[name] = statistics.median(spent)
    if timing.mode == "call":
        calls = {name: 1 for name in names}
    else:
        # Every block times at least block_ms of the contestant's own work; the count is
        # fixed before timing so that it cannot depend on how a block went.
        calls = {name: max(timing.block, -int(-timing.block_ms * 1e-3 // max(warm[name], 1e-7)))
                 for name in names}
    times = {name: [] for name in names}
    per_round = {name: [] for name in names}
    for r in range(timing.rounds):
        for j in range(len(names)):
            name = names[(r + j) % len(names)]
            fn, out = contestants[name], times[name]
            start = len(out)
            if timing.mode == "block":
                time.sleep(timing.settle)
                t_end = time.perf_counter() + timing.lead_ms * 1e-3
                fn()
                while time.perf_counter() < t_end:
                    fn()
            for _ in range(calls[name]):
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
            per_round[name].append(statistics.median(out[start:]))
    if rounds_out is not None:
        rounds_out.update(per_round)
    return {name: (statistics.median(v), min(v)) for name, v in times.items()}


def _ort_session(op, attrs, inputs, expected, threads, spin=False):
    import onnxruntime as ort
    from onnx import helper
    names = [f"i{k}" if a is not None else "" for k, a in enumerate(inputs)]
    node = helper.make_node(op, names, [f"o{k}" for k in range(len(expected))], **attrs)
    vis = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype),
                                         list(np.shape(a)))
           for n, a in zip(names, inputs) if n]
    outs = [helper.make_tensor_value_info(f"o{k}", helper.np_dtype_to_tensor_dtype(e.dtype),
                                          list(e.shape)) for k, e in enumerate(expected)]
    model = helper.make_model(helper.make_graph([node], "bench", vis, outs),
                              opset_imports=[helper.make_opsetid("", 18 if op != "Gelu" else 20)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    # Per-call interleaving: idle onnxruntime workers would spin and steal the CPU from the
    # next contestant, so they sleep. Blocks: they spin between back-to-back calls, as they do
    # in use (the settle pause lets them go idle before the next contestant's block).
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {n: np.asarray(a) for n, a in zip(names, inputs) if n}
    return lambda: sess.run(None, feeds)


def _plan(op, attrs, inputs, n_out):
    from pyvta.compiler.ir import Node
    from pyvta.runtime.cpu.llvm.ops import plan_node
    node = Node(op, op, [f"i{k}" if a is not None else "" for k, a in enumerate(inputs)],
                [f"o{k}" for k in range(n_out)], dict(attrs))
    consts = {k: np.asarray(a) for k, a in enumerate(inputs) if k > 0 and a is not None}
    plan = plan_node(node, [np.shape(a) if a is not None else None for a in inputs],
                     [np.asarray(a).dtype if a is not None else None for a in inputs], consts)
    return node, plan


def layout_cases(timing, threads, spin=False):
    """The accelerator's activation packing (pynq-z1: BLOCK 16, batch 1) on a 64x56x56 int8
    map: compiled kernel vs ``compiler/layout.py`` (numpy) vs onnxruntime running the same
    rearrangement as Pad/Reshape/Transpose (pack) and Transpose/Reshape/Slice (unpack)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    from pyvta.compiler.layout import pack_activation, unpack_activation
    from pyvta.hw.config import load_config
    from pyvta.runtime.cpu.llvm.ops import plan_pack, plan_unpack
    cfg = load_config("pynq-z1")
    shape = (1, 60, 56, 56)                         # 60 channels: the last block is padded
    x = np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8)
    cb = -(-shape[1] // cfg.block_in)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")

    def session(nodes, inits, in_shape, out_shape):
        g = helper.make_graph(nodes, "layout",
                              [helper.make_tensor_value_info("x", TensorProto.INT8, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, out_shape)],
                              inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
        return ort.InferenceSession(m.SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])

    def const(name, values):
        return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
    pshape = (1, cb, 56, 56, 1, cfg.block_in)
    pack_sess = session(
        [helper.make_node("Pad", ["x", "pads"], ["p"]),
         helper.make_node("Reshape", ["p", "s"], ["r"]),
         helper.make_node("Transpose", ["r"], ["y"], perm=[0, 1, 3, 4, 2])],
        [const("pads", [0, 0, 0, 0, 0, cb * cfg.block_in - shape[1], 0, 0]),
         const("s", [1, cb, cfg.block_in, 56, 56])], list(shape), [1, cb, 56, 56, cfg.block_in])
    packed = pack_activation(x, cfg)
    unpack_sess = session(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 4, 2, 3]),
         helper.make_node("Reshape", ["t", "s"], ["r"]),
         helper.make_node("Slice", ["r", "st", "en", "ax"], ["y"])],
        [const("s", [1, cb * cfg.block_in, 56, 56]), const("st", [0]),
         const("en", [shape[1]]), const("ax", [1])],
        [1, cb, 56, 56, cfg.block_in], list(shape))
    out, pack = plan_pack(shape, cfg)
    back, unpack = plan_unpack(shape, cfg)
    pack(x)
    unpack(out)
    rows = []
    ok = np.array_equal(out, packed) and np.array_equal(
        pack_sess.run(None, {"x": x})[0].reshape(pshape), packed)
    t = _race({"llvm": lambda: pack(x), "numpy": lambda: pack_activation(x, cfg),
               "ort": lambda: pack_sess.run(None, {"x": x})}, timing)
    rows.append(("Pack activation 60x56x56", t, ok))
    p5 = packed.reshape(1, cb, 56, 56, cfg.block_in)
    ok = np.array_equal(back, x) and np.array_equal(unpack_sess.run(None, {"x": p5})[0], x)
    t = _race({"llvm": lambda: unpack(packed),
               "numpy": lambda: unpack_activation(packed, shape, cfg),
               "ort": lambda: unpack_sess.run(None, {"x": p5})}, timing)
    rows.append(("Unpack activation 60x56x56", t, ok))
    return rows


def compile_times(selected):
    """First-run (empty cache) and second-run (cached) planning time of all kernels."""
    import copy

    from pyvta.runtime.cpu.llvm import compiler
    results = []
    saved = os.environ.get("PYVTA_CACHE_DIR")
    with tempfile.TemporaryDirectory() as d:
        os.environ["PYVTA_CACHE_DIR"] = d
        for _ in range(2):
            compiler._COMPILERS.clear()          # a fresh process starts like this
            t0 = time.perf_counter()
            for _, op, attrs, inputs, n_out in selected:
                _plan(op, attrs, inputs, n_out)
            results.append((time.perf_counter() - t0,
                            copy.copy(compiler.get_compiler().stats)))
    compiler._COMPILERS.clear()
    if saved is None:
        os.environ.pop("PYVTA_CACHE_DIR", None)
    else:
        os.environ["PYVTA_CACHE_DIR"] = saved
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interleave", choices=("block", "call"), default="block",
                    help="block: each contestant runs a block of back-to-back calls per round, "
                         "with a settle pause between blocks (default); call: one call of "
                         "each contestant per round")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timing rounds per kernel (default 10 blocks, or 40 calls)")
    ap.add_argument("--block", type=int, default=5, help="calls per block, at least")
    ap.add_argument("--block-ms", type=float, default=20.0,
                    help="milliseconds of timed work per block, at least")
    ap.add_argument("--lead-ms", type=float, default=50.0,
                    help="milliseconds of untimed calls at the start of each block (the CPUs "
                         "get back to speed after the settle pause)")
    ap.add_argument("--settle", type=float, default=0.25,
                    help="seconds of pause before each block (OpenBLAS's worker spins "
                         "~0.12 s after a call)")
    ap.add_argument("--filter", default="", help="only cases whose label contains this")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for LLVM kernels and onnxruntime (default: all CPUs)")
    args = ap.parse_args(argv)
    try:
        timing = Timing(args.interleave, args.repeat, args.block, args.block_ms, args.settle,
                        args.lead_ms)
    except ValueError as e:
        ap.error(str(e))
    spin = args.interleave == "block"
    if args.threads:
        os.environ["PYVTA_THREADS"] = str(args.threads)
    from pyvta.runtime.cpu import numpy_ops
    from pyvta.runtime.cpu.llvm.program import num_threads
    threads = num_threads()
    selected = [c for c in cases() if args.filter.lower() in c[0].lower()]

    (first, st1), (second, st2) = compile_times(selected)

    print(f"CPU fallback kernels, timed by {timing.describe()}; {threads} thread(s) for "
          f"LLVM and onnxruntime{' (and OpenBLAS)' if args.threads else ''} (onnxruntime "
          f"spinning {'on' if spin else 'off'}); numpy = runtime/cpu/numpy_ops.py; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'kernel':30} {'llvm ms':>9} {'numpy ms':>9} {'ort ms':>9} {'numpy/llvm':>10} "
          f"{'(best)':>7} {'llvm/ort':>9} {'(best)':>7}  check")
    print(f"{'':30} {'median':>9} {'median':>9} {'median':>9} {'median':>10} {'':>7} "
          f"{'median':>9}")
    vs_numpy, vs_numpy_best, vs_ort, slower, slower_best = [], [], [], [], []

    def row(label, t, ok, rounds=None):
        (l_med, l_min), (n_med, n_min), (o_med, o_min) = t["llvm"], t["numpy"], t["ort"]
        vs_numpy.append(n_med / l_med)
        vs_numpy_best.append(n_min / l_min)
        vs_ort.append(l_med / o_med)
        if n_med < l_med:
            note = ""
            if rounds:   # how often llvm was ahead round by round: a tie moves with the machine
                ahead = sum(lr < nr for lr, nr in zip(rounds["llvm"], rounds["numpy"]))
                pairs = " ".join(f"{lr * 1e6:.0f}/{nr * 1e6:.0f}"
                                 for lr, nr in zip(rounds["llvm"], rounds["numpy"]))
                note = (f"; llvm ahead in {ahead} of {len(rounds['llvm'])} rounds; "
                        f"round medians llvm/numpy us: {pairs}")
            slower.append(f"{label} ({n_med / l_med:.2f}{note})")
        if n_min < l_min:
            slower_best.append(f"{label} ({n_min / l_min:.2f})")
        print(f"{label:30} {l_med * 1e3:9.3f} {n_med * 1e3:9.3f} {o_med * 1e3:9.3f} "
              f"{n_med / l_med:10.2f} {n_min / l_min:7.2f} {l_med / o_med:9.2f} "
              f"{l_min / o_min:7.2f}  {'ok' if ok else 'MISMATCH'}", flush=True)

    for label, op, attrs, inputs, n_out in selected:
        node, plan = _plan(op, attrs, inputs, n_out)
        if plan is None:
            print(f"{label:30} not compiled (runs on numpy)")
            continue
        ins = [np.asarray(a) if a is not None else None for a in inputs]
        want = numpy_ops.run_node(node, ins)
        got = [g.copy() for g in plan(ins)]
        ok = all(np.allclose(g, w, rtol=1e-4, atol=1e-4) for g, w in zip(got, want))
        rounds = {}
        t = _race({"llvm": lambda: plan(ins), "numpy": lambda: numpy_ops.run_node(node, ins),
                   "ort": _ort_session(op, attrs, inputs, want, threads, spin)}, timing, rounds)
        row(label, t, ok, rounds)
    if not args.filter or "activation" in args.filter.lower():
        for label, t, ok in layout_cases(timing, threads, spin):
            row(label, t, ok)
    if vs_numpy:
        print(f"\nmedian speed-up over numpy: {statistics.median(vs_numpy):.2f}x "
              f"(min {min(vs_numpy):.2f}x; on best times {statistics.median(vs_numpy_best):.2f}x, "
              f"min {min(vs_numpy_best):.2f}x); median llvm/onnxruntime time ratio: "
              f"{statistics.median(vs_ort):.2f} (max {max(vs_ort):.2f})")
        print(f"floor 'no kernel slower than numpy' (medians): "
              f"{'met' if not slower else 'NOT met: ' + ', '.join(slower)}")
        print(f"  on best times: {'none slower' if not slower_best else ', '.join(slower_best)}")
        print(f"floor 'median within 2x of onnxruntime': "
              f"{'met' if statistics.median(vs_ort) <= 2 else 'NOT met'}")
    print(f"\ncompile, {len(selected)} nodes: first run {first:.2f} s ({st1.compiled} modules "
          f"compiled), second run {second:.3f} s ({st2.compiled} compiled, {st2.cache_hits} "
          f"loaded from the disk cache)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
