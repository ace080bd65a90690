"""A native thread pool for compiled kernels: hand-offs in microseconds, not tens of them.

Handing a kernel's range to a :class:`concurrent.futures.ThreadPoolExecutor` costs about
25 microseconds on the project's machines (Python wakes a thread, which reacquires the GIL),
as much as a memory-bound pass over a megabyte takes; so element-wise kernels, copies and
matrix-vector products stayed on one thread and lost to numpy/OpenBLAS with two.

This pool does the hand-off in compiled code. Its worker threads are Python threads parked
inside one ctypes call (``pool_worker``, GIL released) for the whole process life; a kernel
call (``pool_run``, also one ctypes call) publishes the kernel's function pointer and buffer
addresses in a shared state block, and then every thread, the caller included, claims chunks
of the parallel range with a compare-and-swap until none is left (work sharing: a worker that
is not scheduled in time finds nothing left, and the caller has run every chunk).

Idle threads wait in three stages. A worker spins with ``pause`` for a few microseconds
after its last chunk, then polls with ``sched_yield`` for about half a millisecond (kernels
separated by a little Python, or by another library's call, find it awake: waking a halted
virtual CPU costs tens of microseconds), then sleeps on a futex. A yield hands the CPU to any
other runnable thread, so polling only uses time nobody else wants; and a yield that took
long (another thread ran) sends the worker to sleep at once, because on a contended CPU a
woken sleeper may preempt the other thread while a thread that yielded waits for the other's
time slice. The caller waits for chunks that others are still running by spinning for about
a chunk's time, then sleeping on a futex that the last chunk wakes (it never yields: on a
contended CPU that would hand the rest of its time slice to another process).

Workers are kept off the CPU the caller runs on (:class:`_Placement`): otherwise, when the
other CPUs are busy (OpenBLAS's worker spins for about 0.1 s after numpy's matmul), the
scheduler often queues a woken worker behind the caller, which then runs every chunk itself,
call after call.

What the pool cannot avoid: a worker preempted in the middle of a chunk (another process
wants its core) holds the caller until it runs again. On a machine whose cores are all
busy, splitting therefore makes short kernels slower at the median, which is why
:mod:`.program` only splits big kernels and times both modes (``ThreadChoice``).

Linux on x86-64 only (futex system call number, ``pause``); :func:`get_pool` returns ``None``
elsewhere and :mod:`.program` falls back to the executor.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import sys
import threading

import llvmlite.ir as ir
import numpy as np

from . import buffers
from .compiler import get_compiler

__all__ = ["NativePool", "get_pool", "MAX_PTRS"]

#: Kernels with more buffer arguments than this run through the executor instead.
MAX_PTRS = 16

I32 = ir.IntType(32)
I64 = ir.IntType(64)
PTR = ir.PointerType()
VOID = ir.VoidType()

# State block layout, in 8-byte slots; the fields written by different threads sit on
# different cache lines.
_WORD = 0      # job word: seq << 40 | chunks << 20 | next chunk to claim
_DONE = 8      # chunks finished in the current job (also a futex word: the caller sleeps on it)
_WAITING = 9   # nonzero while the caller sleeps on _DONE
_EPOCH = 16    # futex word (low 32 bits): bumped at every publication
_SLEEP = 24    # workers asleep (or about to be) on the futex
_FN = 32       # kernel function pointer
_NPTRS = 33    # its number of buffer arguments
_EXTENT = 34   # its parallel range [0, extent)
_QUIT = 35     # nonzero: workers return
_PUBLISHED = 36  # time stamp of the current job's publication
_JOINED = 37   # time stamp of a worker's first chunk of the current job (0: none yet)
_ARGS = 40     # MAX_PTRS buffer addresses
_SLOTS = _ARGS + MAX_PTRS

_FIELD = (1 << 20) - 1                  # chunk counts and indexes are 20-bit fields
MAX_CHUNKS = _FIELD
#: Time-stamp-counter ticks a worker keeps spinning after its last chunk (~7 us at 3 GHz;
#: 100 us made the caller slower on a busy machine: a spinning worker that shares the
#: caller's core starves it).
SPIN_TICKS = 20_000
#: Ticks (~0.5 ms) an idle thread keeps polling with ``sched_yield`` after the pause spin,
#: so that kernels separated by a little Python (or another library's call) find the worker
#: awake without a wake-up through the hypervisor. A yield gives the CPU to any other
#: runnable thread, so this only uses time nobody else wants.
YIELD_TICKS = 1_200_000
#: A ``sched_yield`` that took longer than this (~10 us) ran another thread: the CPU is
#: contended, so the thread sleeps on its futex at once. A sleeper that is woken may preempt
#: the other thread; a runnable thread that yielded waits for the other thread's time slice.
BUSY_TICKS = 25_000
#: Ticks of a futex sleep that count as its 50 ms timeout (20 ms at 2.5 GHz).
TIMEOUT_TICKS = 50_000_000
#: Ticks (~50 us, a chunk's time) the caller spins for before sleeping until the last chunk
#: is done.
WAIT_TICKS = 120_000
SYS_FUTEX = 202                          # x86-64
SYS_SCHED_YIELD = 24                     # x86-64
FUTEX_WAIT_PRIVATE, FUTEX_WAKE_PRIVATE = 128, 129


def _c(v, ty=I64):
    return ir.Constant(ty, v)


def _render_pool_ir() -> str:
    """IR of ``pool_worker(state)`` and ``pool_run(state, fn, nptrs, extent, chunks)``."""
    m = ir.Module(name="pyvta_pool")
    syscall = ir.Function(m, ir.FunctionType(I64, [I64], var_arg=True), "syscall")
    pause = ir.Function(m, ir.FunctionType(VOID, []), "llvm.x86.sse2.pause")
    rdtsc = ir.Function(m, ir.FunctionType(I64, []), "llvm.readcyclecounter")

    def slot(b, state, k, ty=I64):
        return b.gep(state, [_c(k)], inbounds=True, source_etype=ty if ty is I64 else I64)

    # run_chunk(state, i, n): the kernel on chunk i of n, then DONE += 1 ---------------------
    run_chunk = ir.Function(m, ir.FunctionType(VOID, [PTR, I64, I64]), "pool_run_chunk")
    run_chunk.linkage = "internal"
    state, i, n = run_chunk.args
    b = ir.IRBuilder(run_chunk.append_basic_block("entry"))
    extent = b.load(slot(b, state, _EXTENT), typ=I64)
    lo = b.sdiv(b.mul(extent, i), n)
    hi = b.sdiv(b.mul(extent, b.add(i, _c(1))), n)
    nptrs = b.load(slot(b, state, _NPTRS), typ=I64)
    done_bb = run_chunk.append_basic_block("done")
    sw = b.switch(nptrs, done_bb)
    for k in range(1, MAX_PTRS + 1):
        bb = run_chunk.append_basic_block(f"n{k}")
        sw.add_case(_c(k), bb)
        b.position_at_end(bb)
        args = [b.load(slot(b, state, _ARGS + j), typ=PTR) for j in range(k)]
        # Loaded as a typed function pointer: llvmlite takes an indirect call's signature
        # from the pointee type (the IR text still says ``ptr``).
        callee = b.load(slot(b, state, _FN),
                        typ=ir.PointerType(ir.FunctionType(VOID, [PTR] * k + [I64, I64])))
        b.call(callee, args + [lo, hi])
        b.branch(done_bb)
    b.position_at_end(done_bb)
    # The last chunk wakes the caller if it went to sleep waiting (Dekker-style with the
    # caller's _WAITING store then _DONE load, all sequentially consistent).
    old = b.atomic_rmw("add", slot(b, state, _DONE), _c(1), "seq_cst")
    last = run_chunk.append_basic_block("last")
    ret = run_chunk.append_basic_block("ret")
    wake = run_chunk.append_basic_block("wake")
    b.cbranch(b.icmp_signed("==", b.add(old, _c(1)), n), last, ret)
    b.position_at_end(last)
    waiting = b.load_atomic(slot(b, state, _WAITING), "seq_cst", 8, typ=I64)
    b.cbranch(b.icmp_signed("!=", waiting, _c(0)), wake, ret)
    b.position_at_end(wake)
    b.call(syscall, [_c(SYS_FUTEX), slot(b, state, _DONE), _c(FUTEX_WAKE_PRIVATE), _c(1)])
    b.branch(ret)
    b.position_at_end(ret)
    b.ret_void()

    # try_claim(state) -> chunk index << 20 | chunks, or -1 when nothing is left -------------
    claim = ir.Function(m, ir.FunctionType(I64, [PTR]), "pool_try_claim")
    claim.linkage = "internal"
    (state,) = claim.args
    b = ir.IRBuilder(claim.append_basic_block("entry"))
    head = claim.append_basic_block("head")
    swap = claim.append_basic_block("swap")
    none = claim.append_basic_block("none")
    got = claim.append_basic_block("got")
    b.branch(head)
    b.position_at_end(head)
    w = b.load_atomic(slot(b, state, _WORD), "acquire", 8, typ=I64)
    nxt = b.and_(w, _c(_FIELD))
    cnt = b.and_(b.lshr(w, _c(20)), _c(_FIELD))
    b.cbranch(b.icmp_unsigned("<", nxt, cnt), swap, none)
    b.position_at_end(swap)
    res = b.cmpxchg(slot(b, state, _WORD), w, b.add(w, _c(1)), "acq_rel", "acquire")
    b.cbranch(b.extract_value(res, 1), got, head)
    b.position_at_end(got)
    b.ret(b.or_(b.shl(nxt, _c(20)), cnt))
    b.position_at_end(none)
    b.ret(_c(-1))

    def yield_was_quick(b):
        """``sched_yield``; true when no other thread ran meanwhile (it returned quickly)."""
        t0 = b.call(rdtsc, [])
        b.call(syscall, [_c(SYS_SCHED_YIELD)])
        return b.icmp_unsigned("<", b.sub(b.call(rdtsc, []), t0), _c(BUSY_TICKS))

    def drain(b, fn_, state, count):
        """Claim and run chunks until none is left, counting them in ``count``."""
        h = fn_.append_basic_block("drain")
        body = fn_.append_basic_block("drain_body")
        out = fn_.append_basic_block("drain_end")
        b.branch(h)
        b.position_at_end(h)
        c = b.call(claim, [state])
        b.cbranch(b.icmp_signed(">=", c, _c(0)), body, out)
        b.position_at_end(body)
        b.call(run_chunk, [state, b.lshr(c, _c(20)), b.and_(c, _c(_FIELD))])
        b.store(b.add(b.load(count), _c(1)), count)
        b.branch(h)
        b.position_at_end(out)

    # pool_worker(state): run chunks; spin while recently busy; sleep on the futex -----------
    worker = ir.Function(m, ir.FunctionType(VOID, [PTR]), "pool_worker")
    (state,) = worker.args
    b = ir.IRBuilder(worker.append_basic_block("entry"))
    ts = b.alloca(ir.LiteralStructType([I64, I64]))       # futex timeout: 50 ms
    b.store(ir.Constant(ir.LiteralStructType([I64, I64]), [0, 50_000_000]), ts)
    since = b.alloca(I64)
    b.store(b.call(rdtsc, []), since)
    top = worker.append_basic_block("top")
    b.branch(top)
    b.position_at_end(top)
    quit_bb = worker.append_basic_block("quit")
    work_bb = worker.append_basic_block("work")
    b.cbranch(b.icmp_signed("!=", b.load_atomic(slot(b, state, _QUIT), "monotonic", 8, typ=I64),
                            _c(0)), quit_bb, work_bb)
    b.position_at_end(quit_bb)
    b.ret_void()
    b.position_at_end(work_bb)
    c = b.call(claim, [state])
    ran = worker.append_basic_block("ran")
    idle = worker.append_basic_block("idle")
    b.cbranch(b.icmp_signed(">=", c, _c(0)), ran, idle)
    b.position_at_end(ran)
    # (for the pool's statistics: when the first worker joined the job)
    b.cmpxchg(slot(b, state, _JOINED), _c(0), b.call(rdtsc, []), "monotonic", "monotonic")
    b.call(run_chunk, [state, b.lshr(c, _c(20)), b.and_(c, _c(_FIELD))])
    b.store(b.call(rdtsc, []), since)
    b.branch(top)
    b.position_at_end(idle)
    spin = worker.append_basic_block("spin")
    poll = worker.append_basic_block("poll")
    yield_bb = worker.append_basic_block("yield")
    sleep = worker.append_basic_block("sleep")
    idle_for = b.sub(b.call(rdtsc, []), b.load(since))
    b.cbranch(b.icmp_unsigned("<", idle_for, _c(SPIN_TICKS)), spin, poll)
    b.position_at_end(spin)
    b.call(pause, [])
    b.branch(top)
    b.position_at_end(poll)
    b.cbranch(b.icmp_unsigned("<", idle_for, _c(YIELD_TICKS)), yield_bb, sleep)
    b.position_at_end(yield_bb)
    b.cbranch(yield_was_quick(b), top, sleep)
    b.position_at_end(sleep)
    # Announce the sleep, then look again: with sequentially consistent operations either
    # pool_run sees the announcement (and wakes us) or we see its job (or its epoch bump).
    epoch = b.load_atomic(slot(b, state, _EPOCH, I32), "seq_cst", 4, typ=I32)
    b.atomic_rmw("add", slot(b, state, _SLEEP), _c(1), "seq_cst")
    w = b.load_atomic(slot(b, state, _WORD), "seq_cst", 8, typ=I64)
    pending = b.icmp_unsigned("<", b.and_(w, _c(_FIELD)), b.and_(b.lshr(w, _c(20)), _c(_FIELD)))
    wait = worker.append_basic_block("wait")
    woke = worker.append_basic_block("woke")
    b.cbranch(pending, woke, wait)
    b.position_at_end(wait)
    slept_from = b.call(rdtsc, [])
    b.call(syscall, [_c(SYS_FUTEX), slot(b, state, _EPOCH), _c(FUTEX_WAIT_PRIVATE),
                     b.zext(epoch, I64), ts])
    # Woken by the 50 ms timeout (no job came): sleep again without spinning or polling.
    now = b.call(rdtsc, [])
    timed_out = b.icmp_unsigned(">", b.sub(now, slept_from), _c(TIMEOUT_TICKS))
    b.store(b.select(timed_out, b.sub(now, _c(YIELD_TICKS)), now), since)
    b.branch(woke)
    b.position_at_end(woke)
    b.atomic_rmw("sub", slot(b, state, _SLEEP), _c(1), "seq_cst")
    with b.if_then(pending):
        b.store(b.call(rdtsc, []), since)
    b.branch(top)

    # pool_run(state, fn, nptrs, extent, chunks): publish, work, wait ------------------------
    run = ir.Function(m, ir.FunctionType(I64, [PTR, PTR, I64, I64, I64]), "pool_run")
    state, fn, nptrs, extent, chunks = run.args
    b = ir.IRBuilder(run.append_basic_block("entry"))
    b.store(fn, slot(b, state, _FN))
    b.store(_c(0), slot(b, state, _JOINED))
    b.store(b.call(rdtsc, []), slot(b, state, _PUBLISHED))
    b.store(nptrs, slot(b, state, _NPTRS))
    b.store(extent, slot(b, state, _EXTENT))
    # (atomic exchanges stand for atomic stores: llvmlite's store_atomic wants typed pointers)
    b.atomic_rmw("xchg", slot(b, state, _DONE), _c(0), "monotonic")
    old = b.load_atomic(slot(b, state, _WORD), "monotonic", 8, typ=I64)
    seq = b.add(b.lshr(old, _c(40)), _c(1))
    b.atomic_rmw("xchg", slot(b, state, _WORD), b.or_(b.shl(seq, _c(40)), b.shl(chunks, _c(20))),
                 "seq_cst")
    b.atomic_rmw("add", slot(b, state, _EPOCH, I32), _c(1, I32), "seq_cst")
    sleepers = b.load_atomic(slot(b, state, _SLEEP), "seq_cst", 8, typ=I64)
    wake = run.append_basic_block("wake")
    go = run.append_basic_block("go")
    b.cbranch(b.icmp_signed(">", sleepers, _c(0)), wake, go)
    b.position_at_end(wake)
    b.call(syscall, [_c(SYS_FUTEX), slot(b, state, _EPOCH), _c(FUTEX_WAKE_PRIVATE),
                     _c(0x7FFFFFFF)])
    b.branch(go)
    b.position_at_end(go)
    mine = b.alloca(I64)
    b.store(_c(0), mine)
    drain(b, run, state, mine)
    # Wait for the chunks other threads are still running: spin (about one chunk's time),
    # then sleep on the _DONE futex (the last chunk wakes us). The workers never share our
    # CPU (_Placement), so spinning takes nothing from them; yielding would: on a contended
    # CPU a yield hands the rest of our time slice to another process, milliseconds.
    ts = b.alloca(ir.LiteralStructType([I64, I64]))       # futex timeout: 1 ms
    b.store(ir.Constant(ir.LiteralStructType([I64, I64]), [0, 1_000_000]), ts)
    wait_from = b.alloca(I64)
    b.store(b.call(rdtsc, []), wait_from)
    wait_h = run.append_basic_block("wait")
    wait_b = run.append_basic_block("wait_body")
    ret = run.append_basic_block("ret")
    b.branch(wait_h)
    b.position_at_end(wait_h)
    done = b.load_atomic(slot(b, state, _DONE), "acquire", 8, typ=I64)
    b.cbranch(b.icmp_signed("<", done, chunks), wait_b, ret)
    b.position_at_end(wait_b)
    sleep = run.append_basic_block("sleep")
    pse = run.append_basic_block("pause")
    b.cbranch(b.icmp_unsigned("<", b.sub(b.call(rdtsc, []), b.load(wait_from)),
                              _c(WAIT_TICKS)), pse, sleep)
    b.position_at_end(pse)
    b.call(pause, [])
    b.branch(wait_h)
    b.position_at_end(sleep)
    b.atomic_rmw("xchg", slot(b, state, _WAITING), _c(1), "seq_cst")
    done = b.load_atomic(slot(b, state, _DONE), "seq_cst", 8, typ=I64)
    fwait = run.append_basic_block("futex_wait")
    after = run.append_basic_block("after_wait")
    b.cbranch(b.icmp_signed("<", done, chunks), fwait, after)
    b.position_at_end(fwait)
    b.call(syscall, [_c(SYS_FUTEX), slot(b, state, _DONE), _c(FUTEX_WAIT_PRIVATE),
                     b.and_(done, _c(0xFFFFFFFF)), ts])
    b.branch(after)
    b.position_at_end(after)
    b.atomic_rmw("xchg", slot(b, state, _WAITING), _c(0), "seq_cst")
    b.branch(wait_h)
    b.position_at_end(ret)
    b.ret(b.load(mine))
    return str(m)


class NativePool:
    """Worker threads parked in compiled code; see the module docstring.

    Parameters
    ----------
    threads : int
        Threads sharing a kernel's range, the caller included (``threads - 1`` workers).
    """

    def __init__(self, threads: int, compiler=None):
        if threads < 2:
            raise ValueError(f"a pool needs at least 2 threads, not {threads}")
        compiler = compiler or get_compiler()
        text = _render_pool_ir()
        # Symbols must be unique per IR text (the compiler's contract): suffix them.
        import hashlib
        tag = hashlib.sha256(text.encode()).hexdigest()[:12]
        for name in ("pool_worker", "pool_run", "pool_run_chunk", "pool_try_claim"):
            text = text.replace(f'@"{name}"', f'@"{name}_{tag}"')
        self._compiler = compiler       # owns the engine holding the code: keep it alive
        self._worker = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(
            compiler.load(text, f"pool_worker_{tag}"))
        self._run = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                     ctypes.c_int64, ctypes.c_int64)(
            compiler.load(text, f"pool_run_{tag}"))
        self._state = buffers.zeros(_SLOTS, np.int64)      # cache-line aligned
        self.addr = self._state.ctypes.data
        self.threads = threads
        self._lock = threading.Lock()
        self._last_ptrs = None
        self.last_helped = False  #: whether a worker ran a chunk of the last call
        self.calls = 0          #: parallel calls run
        self.helped = 0         #: ... in which a worker ran at least one chunk
        self.chunks = 0         #: chunks of those calls
        self.worker_chunks = 0  #: ... run by the workers (the rest by the callers)
        self.join_ticks = 0     #: time-stamp ticks from publication to a worker's first chunk
        self._placement = _Placement(threads - 1)
        self._workers = [threading.Thread(target=self._work, args=(k,), daemon=True,
                                          name=f"pyvta-native-{k}")
                         for k in range(threads - 1)]
        for t in self._workers:
            t.start()

    def _work(self, k: int) -> None:
        self._placement.register(k)
        self._worker(self.addr)

    def close(self, timeout: float = 0.5) -> None:
        """Make the workers return (they notice within their 50 ms futex timeout) and join
        them; registered at exit, so no worker runs compiled code while the interpreter
        tears down the engine that holds it."""
        self._state[_QUIT] = 1
        for t in self._workers:
            t.join(timeout)

    def run(self, fn_addr: int, ptrs, extent: int, chunks: int) -> bool:
        """Run ``fn(*ptrs, lo, hi)`` over ``[0, extent)`` in ``chunks`` pieces on all threads.

        Returns ``False`` (having run nothing) when another thread is using the pool or the
        kernel has too many buffers: the caller then runs it itself.
        """
        if len(ptrs) > MAX_PTRS or self._state[_QUIT] or \
                not self._lock.acquire(blocking=False):
            return False
        try:
            # (about 0.2 us through ctypes: every 32nd call, or after one no worker helped)
            if not self.last_helped or not self.calls & 31:
                self._placement.follow()
            if ptrs != self._last_ptrs:
                self._state[_ARGS:_ARGS + len(ptrs)] = ptrs
                self._last_ptrs = list(ptrs)
            chunks = max(1, min(chunks, MAX_CHUNKS))
            mine = self._run(self.addr, fn_addr, len(ptrs), extent, chunks)
            self.last_helped = mine < chunks
            self.calls += 1
            self.helped += self.last_helped
            self.chunks += chunks
            self.worker_chunks += chunks - mine
            if mine < chunks:
                self.join_ticks += int(self._state[_JOINED]) - int(self._state[_PUBLISHED])
        finally:
            self._lock.release()
        return True


class _Placement:
    """Keeps the workers off the CPU the calling thread runs on.

    The scheduler places a woken worker next to its waker or where it last ran; when every
    other CPU is busy (a spinning OpenBLAS thread after numpy's matmul, another process) it
    often queues it behind the caller, which then runs every chunk itself while the worker
    waits for the caller's CPU: the split call takes single-thread time, call after call,
    because the worker keeps returning to that CPU. Restricting the workers to the other CPUs
    (updated whenever the caller is seen on another CPU: a syscall per worker, rarely) makes
    a worker compete with whatever runs there instead, where it gets its fair share.
    """

    def __init__(self, workers: int):
        self.tids = [0] * workers
        self.cpu = -1
        try:
            self.allowed = set(os.sched_getaffinity(0))
            libc = ctypes.CDLL(None, use_errno=True)
            self._getcpu = libc.sched_getcpu
            self._getcpu.restype = ctypes.c_int
            self._getcpu.argtypes = []
        except (AttributeError, OSError):     # pragma: no cover - not Linux/glibc
            self._getcpu = None

    def register(self, k: int) -> None:
        """Called by worker ``k`` on its own thread, before it parks."""
        self.tids[k] = threading.get_native_id()

    def follow(self) -> None:
        """Re-pin the workers if the caller runs on another CPU than at the last call."""
        if self._getcpu is None:
            return
        cpu = self._getcpu()
        if cpu == self.cpu or cpu < 0:
            return
        self.cpu = cpu
        others = self.allowed - {cpu}
        if not others:
            return
        for tid in self.tids:
            if tid:
                try:
                    os.sched_setaffinity(tid, others)
                except OSError:       # pragma: no cover - a thread gone or not permitted
                    pass


_POOL: list = []


def get_pool(threads: int):
    """The process-wide :class:`NativePool` for ``threads`` threads, or ``None`` where it is
    not supported (not x86-64 Linux) or fewer than two threads are wanted."""
    if threads < 2 or not sys.platform.startswith("linux") or \
            platform.machine() not in ("x86_64", "AMD64"):
        return None
    for pool in _POOL:
        if pool.threads == threads:
            return pool
    pool = NativePool(threads)
    _POOL.append(pool)
    atexit.register(pool.close)
    return pool
