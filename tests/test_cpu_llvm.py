"""The LLVM-compiled kernels against the numpy operators (the reference), op by op."""

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from pyvta.compiler.ir import Node
from pyvta.hw.config import load_config
from pyvta.compiler.layout import pack_activation, unpack_activation
from pyvta.runtime.cpu import numpy_ops
from pyvta.runtime.cpu.llvm.compiler import LlvmCompiler
from pyvta.runtime.cpu.llvm.ops import plan_node, plan_pack, plan_unpack
from pyvta.runtime.cpu.llvm.renderer import render_elementwise

rng = np.random.default_rng(1)


def f(*shape):
    return rng.standard_normal(shape).astype(np.float32)


X = f(2, 6, 11, 13)
CASES = [
    ("Add", {}, [X, f(6, 1, 13)]), ("Sub", {}, [X, f(1)]), ("Mul", {}, [f(1, 6, 1, 1), X]),
    ("Div", {}, [X, f(13) + 4]), ("Max", {}, [X, f(13)]), ("PRelu", {}, [X, f(6, 1, 1)]),
    ("Relu", {}, [X]), ("Sigmoid", {}, [X * 8]), ("Tanh", {}, [X * 4]), ("Exp", {}, [X * 5]),
    ("Erf", {}, [X * 2]), ("HardSigmoid", {"alpha": 0.2, "beta": 0.5}, [X * 4]),
    ("HardSwish", {}, [X * 4]), ("LeakyRelu", {"alpha": 0.1}, [X]), ("Gelu", {}, [X]),
    ("Clip", {}, [X, np.float32(-0.5), np.float32(0.7)]), ("Elu", {"alpha": 0.8}, [X]),
    ("Softmax", {"axis": -1}, [X * 3]), ("LogSoftmax", {"axis": 3}, [X]),
    ("Softmax", {"axis": 1}, [X * 3]), ("LogSoftmax", {"axis": 2}, [X]),
    ("LayerNormalization", {"axis": -1, "epsilon": 1e-5}, [X, f(13), f(13)]),
    ("LayerNormalization", {"axis": 2, "epsilon": 1e-3}, [X, f(11, 13), f(11, 13)]),
    ("GlobalAveragePool", {}, [X]), ("GlobalMaxPool", {}, [X]),
    ("ReduceMean", {"axes": [-1], "keepdims": 1}, [X]),
    ("ReduceSum", {"keepdims": 0}, [X, np.array([2, 3])]),
    ("ReduceMax", {"axes": [1, 2, 3], "keepdims": 0}, [X]),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, [X]),
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}, [X]),
    ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, [X]),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [1, 2], "pads": [1, 0, 1, 1],
                     "count_include_pad": 1, "ceil_mode": 1}, [X]),
    ("Conv", {"pads": [1, 1, 1, 1]}, [X, f(8, 6, 3, 3), f(8)]),
    ("Conv", {"strides": [2, 2], "pads": [3, 3, 3, 3]}, [X, f(7, 6, 7, 7)]),
    ("Conv", {}, [X, f(16, 6, 1, 1), f(16)]),
    ("Conv", {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}, [X, f(6, 1, 3, 3), f(6)]),
    ("Conv", {"group": 2, "dilations": [2, 1], "pads": [0, 1, 2, 1]}, [X, f(4, 3, 3, 3), f(4)]),
    ("Gemm", {"transB": 1}, [f(3, 40), f(21, 40), f(21)]),
    ("Gemm", {"beta": 0.5}, [f(7, 40), f(40, 35), f(7, 35)]),
    ("Gemm", {"transA": 1}, [f(40, 9), f(40, 19)]),
    ("MatMul", {}, [f(2, 5, 33), f(33, 50)]), ("MatMul", {}, [f(1, 1, 33), f(33, 50)]),
    ("Gemm", {"transB": 1}, [f(1, 300), f(37, 300), f(37)]),
    ("Gemm", {"transB": 1}, [f(2, 70), f(90, 70), f(90)]),   # 2-row GEMV: paired panels
    ("Transpose", {"perm": [0, 2, 3, 1]}, [X]),
    ("Concat", {"axis": 1}, [X, X[:, :2].copy(), f(2, 3, 11, 13)]),
    ("Split", {"axis": 3, "num_outputs": 3}, [X]),
    ("Slice", {}, [X, np.array([1, 10]), np.array([6, 0]), np.array([1, 3]),
                   np.array([2, -3])]),
    ("Pad", {"mode": "constant"}, [X, np.array([0, 1, 2, 0, 0, 0, 1, 3]), np.float32(1.5)]),
    ("Resize", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                "nearest_mode": "floor"}, [X, None, np.array([1, 1, 2, 2], np.float32)]),
    ("Resize", {"mode": "linear", "coordinate_transformation_mode": "half_pixel"},
     [X, None, np.array([1, 1, 1.5, 0.5], np.float32)]),
    ("Resize", {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
     [X, None, None, np.array([2, 6, 20, 7], np.int64)]),
    ("QuantizeLinear", {"axis": 1}, [X, np.float32(0.02), np.int8(0)]),
    ("QuantizeLinear", {"axis": 1}, [X, np.linspace(0.01, 0.05, 6).astype(np.float32),
                                     np.zeros(6, np.int8)]),
    ("DequantizeLinear", {"axis": 1}, [rng.integers(-128, 128, X.shape).astype(np.int8),
                                       np.float32(0.05), np.int8(0)]),
]


@pytest.mark.parametrize("op,attrs,inputs", CASES, ids=[f"{c[0]}{i}" for i, c in
                                                        enumerate(CASES)])
def test_llvm_matches_numpy(op, attrs, inputs):
    n_out = 3 if op == "Split" else 1
    node = Node(op, "n", [f"i{k}" if a is not None else "" for k, a in enumerate(inputs)],
                [f"o{k}" for k in range(n_out)], dict(attrs))
    want = numpy_ops.run_node(node, inputs)
    consts = {k: a for k, a in enumerate(inputs) if k > 0 and a is not None}
    plan = plan_node(node, [a.shape if a is not None else None for a in inputs],
                     [a.dtype if a is not None else None for a in inputs], consts)
    assert plan is not None, f"{op} was not compiled"
    for _ in range(2):      # the second call reuses the buffers
        got = plan(inputs)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            if w.dtype.kind == "f":
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5)
            else:
                np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("shape", [(1, 20, 5, 7), (3, 32, 4, 4), (2, 10)])
def test_layout_pack_unpack_match_compiler_layout(shape):
    cfg = load_config("tiny")
    x = rng.integers(-128, 128, shape).astype(np.int8)
    out, pack = plan_pack(shape, cfg)
    pack(x)
    np.testing.assert_array_equal(out, pack_activation(x, cfg))
    back, unpack = plan_unpack(shape, cfg)
    unpack(out)
    np.testing.assert_array_equal(back, unpack_activation(out.tobytes(), shape, cfg))
    np.testing.assert_array_equal(back, x)


def test_disk_cache_second_run_compiles_nothing(tmp_path):
    kern = render_elementwise((1000,), (1,), np.float32, [((1,), 0, np.float32)],
                              lambda kb, m, x: m.tanh(x))
    first = LlvmCompiler(tmp_path)
    first.load(kern.ir, kern.symbol)
    assert (first.stats.compiled, first.stats.cache_hits) == (1, 0)
    second = LlvmCompiler(tmp_path)       # a new process would start like this
    second.load(kern.ir, kern.symbol)
    assert (second.stats.compiled, second.stats.cache_hits) == (0, 1)
    assert any(tmp_path.rglob("*.o"))


def test_numpy_path_without_llvmlite(monkeypatch, capsys):
    from pyvta.runtime.cpu import executor
    monkeypatch.setattr(executor, "llvm_available", lambda: False)
    monkeypatch.setattr(executor, "_NOTICE_SHOWN", False)
    assert executor.resolve_backend("auto") == "numpy"
    assert executor.resolve_backend("auto") == "numpy"
    err = capsys.readouterr().err
    assert err.count("llvmlite not found") == 1          # one line, once
    with pytest.raises(RuntimeError, match="pip install llvmlite"):
        executor.resolve_backend("llvm")
    with pytest.raises(ValueError, match="'auto', 'llvm' or 'numpy', not 'gpu'"):
        executor.resolve_backend("gpu")


def test_damaged_cache_entry_is_recompiled(tmp_path):
    kern = render_elementwise((64,), (1,), np.float32, [((1,), 0, np.float32)],
                              lambda kb, m, x: m.exp(x))
    LlvmCompiler(tmp_path).load(kern.ir, kern.symbol)
    for obj in tmp_path.rglob("*.o"):
        obj.write_bytes(obj.read_bytes()[:-50])          # truncated (e.g. a full disk)
    again = LlvmCompiler(tmp_path)
    assert again.load(kern.ir, kern.symbol)
    assert (again.stats.compiled, again.stats.cache_hits) == (1, 0)


@pytest.mark.parametrize("m,k,n", [(1, 1283, 70), (2, 517, 33), (1, 3, 16)])
def test_thin_gemm_split_k(m, k, n):
    """1-2 row tiles keep several accumulator sets (depth remainders, several depth blocks)."""
    a, b, c = f(m, k), f(n, k), f(n)
    node = Node("Gemm", "g", ["a", "b", "c"], ["y"], {"transB": 1})
    plan = plan_node(node, [a.shape, b.shape, c.shape], [a.dtype] * 3, {1: b, 2: c})
    got = plan([a, b, c])[0]
    np.testing.assert_allclose(got, a @ b.T + c, rtol=1e-4, atol=1e-4)


def test_native_pool_splits_and_matches(monkeypatch):
    """Big kernels run through the native pool: chunked ranges, ragged sizes, same result."""
    from pyvta.runtime.cpu.llvm import pool as pool_mod, program
    from pyvta.runtime.cpu.llvm.program import Program
    monkeypatch.setenv("PYVTA_THREADS", "3")
    monkeypatch.setattr(program, "_NATIVE_MIN_WORK", 1 << 12)    # small kernels too
    if pool_mod.get_pool(3) is None:
        pytest.skip("native pool needs Linux x86-64")
    x, y = f(3, 211, 307), f(211, 1)
    node = Node("Add", "n", ["x", "y"], ["z"], {})
    plan = plan_node(node, [x.shape, y.shape], [x.dtype, y.dtype], {})
    assert plan.steps[0]._prog._pool is not None
    for _ in range(3):
        np.testing.assert_array_equal(plan([x, y])[0], x + y)
    # a range shorter than threads x chunks, and one of a single item
    for n in (5, 1, 100_003):
        kern = render_elementwise((n, 70000 // n + 1), (70000 // n + 1, 1), np.float32,
                                  [((70000 // n + 1, 1), 0, np.float32)],
                                  lambda kb, m, v: kb.b.fmul(v, v))
        prog = Program(kern)
        assert prog._pool is not None or n == 1
        v = f(n, 70000 // n + 1)
        out = np.empty_like(v)
        prog(out, v)
        np.testing.assert_array_equal(out, v * v)


def test_computed_loops_ask_for_interleaving():
    """The innermost loop of a computed element-wise kernel carries a real loop ID asking
    for 4 interleaved vectors (self-referencing and distinct, or LLVM ignores it); a plain
    memory pass does not; both compile and compute the right values."""
    import re
    from pyvta.runtime.cpu.llvm.program import Program
    x = f(3, 1000)
    exp = render_elementwise(x.shape, (1000, 1), np.float32, [((1000, 1), 0, np.float32)],
                             lambda kb, m, v: m.exp(v), cost=10)
    ids = re.findall(r"^!(\d+) = distinct !\{!(\d+), !(\d+)\}$", exp.ir, re.M)
    assert len(ids) == 1 and ids[0][0] == ids[0][1]
    assert f'!{ids[0][2]} = !{{!"llvm.loop.interleave.count", i32 4}}' in exp.ir
    assert "pyvta.interleave" not in exp.ir
    copy = render_elementwise(x.shape, (1000, 1), np.float32, [((1000, 1), 0, np.float32)],
                              lambda kb, m, v: kb.b.fadd(v, v))
    assert "llvm.loop" not in copy.ir
    for kern, want in ((exp, np.exp(x)), (copy, x + x)):
        out = np.empty_like(x)
        Program(kern)(out, x)
        np.testing.assert_allclose(out, want, rtol=1e-6)


def _no_warmup(monkeypatch):
    """No idle-gap warm-up (ThreadChoice), including one still running from another test."""
    from pyvta.runtime.cpu.llvm.program import ThreadChoice
    monkeypatch.setattr(ThreadChoice, "WARMUP", 0.0)
    monkeypatch.setattr(ThreadChoice, "_warm_until", float("-inf"))


def test_short_kernel_calls_are_timed_one_in_skip_plus_one(monkeypatch):
    """After probing, a short kernel times one call in SKIP + 1 (the others run the chosen
    mode untimed), and every call, timed or not, computes the right result."""
    from pyvta.runtime.cpu.llvm import program
    from pyvta.runtime.cpu.llvm.program import ThreadChoice
    monkeypatch.delenv("PYVTA_ADAPTIVE_THREADS", raising=False)
    monkeypatch.setenv("PYVTA_THREADS", "2")
    monkeypatch.setattr(program, "_NATIVE_MIN_WORK", 1 << 12)
    monkeypatch.setattr(program, "_PARALLEL_MIN_WORK", 1 << 12)
    _no_warmup(monkeypatch)
    monkeypatch.setattr(ThreadChoice, "SKIP_BELOW", 1e9)      # every call counts as short
    x, y = f(64, 1000), f(64, 1000)
    node = Node("Add", "n", ["x", "y"], ["z"], {})
    plan = plan_node(node, [x.shape, y.shape], [x.dtype, y.dtype], {})
    choice = plan.steps[0]._prog.choice
    assert choice is not None
    n = 2 * ThreadChoice.PROBES + 20 * (ThreadChoice.SKIP + 1)
    for k in range(n):
        x[0, 0] = k
        np.testing.assert_array_equal(plan([x, y])[0], x + y)
    timed = choice.calls + (choice.calls // ThreadChoice.REPROBE)   # re-probe wake-ups
    assert 2 * ThreadChoice.PROBES + 18 <= timed <= 2 * ThreadChoice.PROBES + 22


def test_native_pool_concurrent_callers(monkeypatch):
    """Two Python threads calling pooled kernels at once: one runs serially, both correct."""
    import threading
    from pyvta.runtime.cpu.llvm import program
    monkeypatch.setenv("PYVTA_THREADS", "2")
    monkeypatch.setattr(program, "_NATIVE_MIN_WORK", 1 << 12)
    x = f(512, 300)
    node = Node("Tanh", "n", ["x"], ["y"], {})
    want = numpy_ops.run_node(node, [x])[0]
    plans = [plan_node(node, [x.shape], [x.dtype], {}) for _ in range(2)]
    errors = []

    def work(plan):
        for _ in range(50):
            got = plan([x])[0]
            if not np.allclose(got, want, rtol=2e-5, atol=2e-5):
                errors.append("mismatch")

    threads = [threading.Thread(target=work, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_native_pool_rejects_one_thread():
    from pyvta.runtime.cpu.llvm.pool import NativePool, get_pool
    assert get_pool(1) is None
    with pytest.raises(ValueError, match="at least 2 threads, not 1"):
        NativePool(1)


def test_bound_call_reuses_addresses_only_for_stable_inputs():
    """Same contiguous array objects: addresses remembered; a strided view (copied at each
    call) or new data in a remembered buffer still gives the right answer."""
    x, y = f(40, 30), f(40, 30)
    node = Node("Add", "n", ["x", "y"], ["z"], {})
    plan = plan_node(node, [x.shape, y.shape], [x.dtype, y.dtype], {})
    np.testing.assert_array_equal(plan([x, y])[0], x + y)
    x[:] = f(40, 30)                                   # same buffer, new values
    np.testing.assert_array_equal(plan([x, y])[0], x + y)
    big = f(40, 60)
    view = big[:, ::2]                                 # not contiguous: copied
    np.testing.assert_array_equal(plan([view, y])[0], view + y)
    big[:] = f(40, 60)
    np.testing.assert_array_equal(plan([view, y])[0], view + y)
    with pytest.raises(ValueError, match="kernel takes 3 buffers, not 2"):
        plan.steps[0]._prog(x, y)


def test_concat_of_long_runs_cut_into_pieces():
    """Runs longer than a copy piece (64 KiB) are cut; ragged ends and int8 too."""
    for dtype in (np.float32, np.int8):
        a = rng.integers(-100, 100, (1, 3, 200, 301)).astype(dtype)
        b = rng.integers(-100, 100, (1, 5, 200, 301)).astype(dtype)
        node = Node("Concat", "n", ["a", "b"], ["c"], {"axis": 1})
        plan = plan_node(node, [a.shape, b.shape], [a.dtype, b.dtype], {})
        assert plan.steps[0].__name__ == "runs_step"       # one call, memcpy pieces
        np.testing.assert_array_equal(plan([a, b])[0], np.concatenate([a, b], axis=1))


@pytest.mark.parametrize("dtype", [np.int8, np.float32])
def test_concat_copy_at_every_page_distance(dtype):
    """Pieces whose destination lies 1-63 bytes above the source modulo 4 KiB take the vector
    loop instead of memcpy: both paths, ragged lengths (not multiples of the loop's 128
    bytes) and pieces of either kind in one call copy exactly."""
    item = np.dtype(dtype).itemsize
    shape_a, shape_b = (1, 3, 97, 301), (1, 2, 97, 301)
    node = Node("Concat", "n", ["a", "b"], ["c"], {"axis": 1})
    plan = plan_node(node, [shape_a, shape_b], [np.dtype(dtype)] * 2, {})
    out = plan.outputs[0]
    n_a, n_b = int(np.prod(shape_a)), int(np.prod(shape_b))
    pool = np.empty(8 * (n_a + n_b) * item + 3 * 4096, np.uint8)

    def placed(n, dst_address, distance, lo):
        """An n-element array at or after byte ``lo`` of ``pool`` whose address is
        ``distance`` bytes below ``dst_address`` modulo 4096."""
        base = pool.ctypes.data + lo
        start = lo + (dst_address - distance - base) % 4096
        a = pool[start:start + n * item].view(dtype)
        a[:] = rng.integers(-100, 100, n).astype(dtype)
        assert (dst_address - a.ctypes.data) % 4096 == distance % 4096
        return a
    b_dst = out.ctypes.data + n_a * item
    for d_a, d_b in [(0, 16), (16, 0), (4, 60), (64, 2048), (4092, 32), (12, 12)]:
        if item == 1:
            d_a, d_b = d_a + 1, d_b + 3                    # odd distances too
        a = placed(n_a, out.ctypes.data, d_a, 0).reshape(shape_a)
        b = placed(n_b, b_dst, d_b, 2 * n_a * item + 4096).reshape(shape_b)
        np.testing.assert_array_equal(plan([a, b])[0], np.concatenate([a, b], axis=1))

def test_native_pool_close():
    """Closed pools let their workers return and run nothing more (the caller runs it)."""
    from pyvta.runtime.cpu.llvm.pool import NativePool
    from pyvta.runtime.cpu.llvm.program import Program
    pool = NativePool(2)
    kern = render_elementwise((4096,), (1,), np.float32, [((1,), 0, np.float32)],
                              lambda kb, m, v: kb.b.fadd(v, v))
    prog = Program(kern)
    x, out = f(4096), np.zeros(4096, np.float32)
    assert pool.run(prog._addr, prog.pointers([out, x]), 4096, 7)
    np.testing.assert_array_equal(out, x + x)
    pool.close()
    assert not any(t.is_alive() for t in pool._workers)
    assert not pool.run(prog._addr, prog.pointers([out, x]), 4096, 7)


def test_thread_choice_follows_the_faster_mode(monkeypatch):
    """Probing alternates the modes, then the faster median wins; re-probes let it change."""
    from pyvta.runtime.cpu.llvm.program import ThreadChoice
    monkeypatch.delenv("PYVTA_ADAPTIVE_THREADS", raising=False)
    _no_warmup(monkeypatch)
    c = ThreadChoice()
    cost = {True: 2.0, False: 1.0}             # parallel is slower (a busy machine)
    modes = []
    for _ in range(200):
        par = c.next_parallel()
        modes.append(par)
        c.record(par, cost[par])
    assert modes[:10].count(True) == 5 and modes[:10].count(False) == 5
    assert c.parallel is False
    # a parallel re-probe is two calls: one that wakes the workers, one that is timed
    assert 1 <= modes[10:].count(True) <= 2 * (200 // ThreadChoice.REPROBE)
    cost = {True: 0.5, False: 1.0}             # the machine got idle: splitting wins again
    for _ in range(ThreadChoice.REPROBE * ThreadChoice.PROBES + 1):
        par = c.next_parallel()
        c.record(par, cost[par])
    assert c.parallel is True
    monkeypatch.setenv("PYVTA_ADAPTIVE_THREADS", "0")
    fixed = ThreadChoice()
    assert all(fixed.next_parallel() for _ in range(20))


def test_thread_choice_keeps_splitting_when_serial_barely_wins(monkeypatch):
    """Parallel probes hit by a burst of load look as slow as serial ones: the single thread
    must win by ``SERIAL_MARGIN`` before the kernel stops splitting."""
    from pyvta.runtime.cpu.llvm.program import ThreadChoice
    monkeypatch.delenv("PYVTA_ADAPTIVE_THREADS", raising=False)
    _no_warmup(monkeypatch)
    c = ThreadChoice()
    # serial 4 % faster by the medians, within the margin; one undisturbed parallel probe
    # shows that the split works (1.3 against 2.5)
    par_costs = iter([1.3, 2.6, 2.6, 2.6, 2.6])
    for _ in range(10):
        par = c.next_parallel()
        c.record(par, next(par_costs) if par else 2.5)
    assert c.parallel is True
    c2 = ThreadChoice()
    cost = {True: 2.6, False: 2.6 * ThreadChoice.SERIAL_MARGIN * 0.95}   # clearly faster
    for _ in range(10):
        par = c2.next_parallel()
        c2.record(par, cost[par])
    assert c2.parallel is False
    # no worker ever ran a chunk of a parallel call: the split is a serial call plus the
    # hand-off, so the plain faster median decides
    c3 = ThreadChoice()
    cost = {True: 2.6, False: 2.5}
    for _ in range(10):
        par = c3.next_parallel()
        c3.record(par, cost[par], helped=False)
    assert c3.parallel is False


def test_thread_choice_runs_serially_when_splitting_never_helps(monkeypatch):
    """A split that is never faster, even at its best, than one thread (43 against 40 us):
    the plain faster median decides, so the kernel runs on one thread."""
    from pyvta.runtime.cpu.llvm.program import ThreadChoice
    monkeypatch.delenv("PYVTA_ADAPTIVE_THREADS", raising=False)
    _no_warmup(monkeypatch)
    c = ThreadChoice()
    for k in range(10):
        par = c.next_parallel()
        c.record(par, (43e-6 if par else 40e-6) * (1 + 0.01 * (k % 3)))
    assert c.parallel is False


def test_thread_choice_reprobes_split_with_awake_workers(monkeypatch):
    """After a run of serial calls the pool's workers sleep, and the first split call pays
    for waking them. A re-probe must time a split as a run of split calls meets it, or a
    kernel once settled on one thread would never split again."""
    from pyvta.runtime.cpu.llvm.program import ThreadChoice
    monkeypatch.delenv("PYVTA_ADAPTIVE_THREADS", raising=False)
    _no_warmup(monkeypatch)
    c = ThreadChoice()
    # the probes all meet sleeping workers (1.6); warm, a split takes 0.6 against 1.0
    for _ in range(2 * ThreadChoice.PROBES):
        par = c.next_parallel()
        c.record(par, 1.6 if par else 1.0)
    assert c.parallel is False
    last = False
    for _ in range(ThreadChoice.REPROBE * ThreadChoice.PROBES + 2):
        par = c.next_parallel()
        c.record(par, (0.6 if last else 1.6) if par else 1.0)
        last = par
    assert c.parallel is True


def test_thread_choice_warms_up_after_an_idle_gap(monkeypatch):
    """After the process ran no kernel for IDLE_GAP, calls are untimed for WARMUP and a
    kernel whose split has worked runs split (the other CPU comes back to speed); a kernel
    whose split never beat one thread keeps its serial calls."""
    from pyvta.runtime.cpu.llvm.program import ThreadChoice
    monkeypatch.delenv("PYVTA_ADAPTIVE_THREADS", raising=False)
    now = [100.0]
    monkeypatch.setattr(ThreadChoice, "clock", staticmethod(lambda: now[0]))
    monkeypatch.setattr(ThreadChoice, "_last_end", float("-inf"))
    monkeypatch.setattr(ThreadChoice, "_warm_until", float("-inf"))
    step = 1e-5

    def calls(c, n, cost):
        modes = []
        for _ in range(n):
            par = c.next_parallel()
            now[0] += step
            c.record(par, cost[par])
            modes.append(par)
        return modes

    c = ThreadChoice()
    warm = int(ThreadChoice.WARMUP / step)
    # the process just started: a warm-up, all split (nothing measured yet), nothing timed
    assert all(calls(c, warm - 5, {True: 1.0, False: 1.0}))
    assert not c.times[True] and not c.times[False]
    # past it: probes, then the split wins (0.6 against 1.0)
    calls(c, 5 + 2 * ThreadChoice.PROBES, {True: 0.6, False: 1.0})
    assert c.parallel is True
    # the split meets a cold CPU: probes make one thread look faster
    calls(c, 3 * ThreadChoice.PROBES, {True: 1.6, False: 1.0})
    assert c.parallel is False
    # an idle gap: the next WARMUP runs split although one thread is chosen, untimed
    now[0] += 2 * ThreadChoice.IDLE_GAP
    n_par = len(c.times[True])
    assert all(calls(c, warm - 5, {True: 0.6, False: 1.0}))
    assert len(c.times[True]) == n_par and c.parallel is False
    # a kernel whose split never beat one thread stays serial in a warm-up
    s = ThreadChoice()
    calls(s, warm + 2 * ThreadChoice.PROBES, {True: 1.2, False: 1.0})
    assert s.parallel is False
    now[0] += 2 * ThreadChoice.IDLE_GAP
    assert not any(calls(s, 20, {True: 1.2, False: 1.0}))


def test_kernel_buffers_are_aligned_and_staggered():
    """Outputs are line-aligned, and large ones start at page offsets that differ from one
    buffer to the next and from numpy's offset 16 (4 KiB aliasing)."""
    from pyvta.runtime.cpu.llvm import buffers
    big = [buffers.empty((64, 56, 56), np.float32) for _ in range(len(buffers.OFFSETS))]
    offs = [a.ctypes.data % buffers.PAGE for a in big]
    assert len(set(offs)) == len(buffers.OFFSETS)
    assert all(abs(o - 16) >= 240 for o in offs)
    assert all(abs(a - b) >= 512 for a, b in zip(offs, offs[1:]))
    for a in big:
        assert a.shape == (64, 56, 56) and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.flags.writeable
    small = buffers.empty(10, np.int8)
    assert small.shape == (10,) and small.ctypes.data % buffers.LINE == 0
    z = buffers.zeros((3, 0, 2), np.int32)
    assert z.shape == (3, 0, 2) and z.dtype == np.int32
    assert not buffers.zeros((100, 100)).any()
    with pytest.raises(ValueError, match="negative"):
        buffers.empty((2, -1))


@pytest.mark.parametrize("n,k,trans_a,bias", [
    (1000, 1280, 0, "col"),      # 15 blocks of 64 columns, a 48-wide last block
    (64, 37, 0, "none"),         # one full block, no last block
    (100, 53, 1, "col"),         # a 48-wide last block, A read with a stride (transA)
    (16, 5, 0, "row"),           # a 16-wide block only (four accumulator sets); a (1,) bias
    (90, 7, 0, "full"),          # a 32-wide last block, a (1, N) bias
])
def test_gemv_blocks(n, k, trans_a, bias):
    """One-row Gemm runs the GEMV kernel (64-column weight blocks, ragged last block) and
    matches numpy for every bias form and a strided A."""
    from pyvta.runtime.cpu.llvm.linalg import pack_gemv, padded_cols
    a = f(k, 1) if trans_a else f(1, k)
    b = f(k, n)
    c = {"none": None, "col": f(n), "row": f(1), "full": f(1, n)}[bias]
    ins = [a, b] + ([c] if c is not None else [])
    node = Node("Gemm", "g", ["a", "b", "c"][:len(ins)], ["y"], {"transA": trans_a})
    plan = plan_node(node, [x.shape for x in ins], [x.dtype for x in ins],
                     {j: x for j, x in enumerate(ins) if j})
    want = (a.T if trans_a else a) @ b + (0 if c is None else c)
    for _ in range(2):                       # the second call reuses the packed weights
        np.testing.assert_allclose(plan(ins)[0], want, rtol=1e-4, atol=1e-4)
    packed = pack_gemv(b)
    assert packed.shape == (k * padded_cols(n),)
    # the first block holds columns 0..63 (or fewer) depth-major, then the next block
    w = min(64, padded_cols(n))
    np.testing.assert_array_equal(packed[:w].reshape(1, w)[0, :min(w, n)], b[0, :min(w, n)])


def test_native_pool_keeps_workers_off_the_callers_cpu():
    """After a pooled call the workers may run anywhere but on the caller's CPU (when the
    process may use another one), and the pool counts the calls a worker helped in."""
    import os
    import threading
    from pyvta.runtime.cpu.llvm.pool import NativePool
    from pyvta.runtime.cpu.llvm.program import Program
    allowed = os.sched_getaffinity(0)
    pool = NativePool(2)
    try:
        kern = render_elementwise((1 << 16,), (1,), np.float32, [((1,), 0, np.float32)],
                                  lambda kb, m, v: kb.b.fadd(v, v))
        prog = Program(kern)
        x, out = f(1 << 16), np.zeros(1 << 16, np.float32)
        for _ in range(20):
            assert pool.run(prog._addr, prog.pointers([out, x]), 1 << 16, 16)
        np.testing.assert_array_equal(out, x + x)
        assert pool.calls == 20 and 0 <= pool.helped <= 20
        assert pool.chunks == 320 and 0 <= pool.worker_chunks <= 320
        assert (pool.join_ticks > 0) == (pool.helped > 0)
        if len(allowed) > 1:
            cpu = pool._placement.cpu
            tid = pool._workers[0].native_id
            assert cpu in allowed
            assert os.sched_getaffinity(tid) == allowed - {cpu}
        assert threading.get_native_id() not in pool._placement.tids
    finally:
        pool.close()


def _bench_module():
    """``bench/cpu_fallback.py`` (a script, not a package module), imported by path."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "bench" / "cpu_fallback.py"
    spec = importlib.util.spec_from_file_location("_cpu_fallback_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_timing_modes():
    """The benchmark's block mode runs each contestant in blocks of back-to-back calls
    (lead-in calls untimed) in a rotating block order; the per-call mode alternates single
    calls; bad settings are refused by name."""
    bench = _bench_module()
    log = []
    contestants = {name: (lambda name=name: log.append(name)) for name in ("a", "b", "c")}
    timing = bench.Timing("block", rounds=3, block=4, block_ms=0, settle=0, lead_ms=0)
    result = bench._race(contestants, timing)
    assert set(result) == {"a", "b", "c"}
    assert all(0 <= best <= med for med, best in result.values())
    timed = log[3 * 4:]                  # after the warm-ups (1 + 3 calls each)
    blocks = [timed[k:k + 5] for k in range(0, len(timed), 5)]   # 1 lead-in + 4 timed
    assert [blk[0] for blk in blocks] == list("abcbcacab")        # rotated every round
    assert all(len(set(blk)) == 1 for blk in blocks)
    log.clear()
    rounds = {}
    bench._race(contestants, bench.Timing("call", rounds=2), rounds)
    assert log == list("abc") + list("abcbca")
    assert sorted(rounds) == ["a", "b", "c"] and all(len(v) == 2 for v in rounds.values())
    assert bench.Timing("call").rounds == 40 and bench.Timing().rounds == 10
    for kwargs, word in (({"mode": "per-call"}, "interleave"), ({"rounds": 0}, "--repeat"),
                         ({"settle": -1}, "--settle"), ({"block": 0}, "--block")):
        with pytest.raises(ValueError, match=word):
            bench.Timing(**kwargs)
