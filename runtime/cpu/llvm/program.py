"""Call a compiled kernel on numpy buffers: the last step of the CPU fallback.

A :class:`Program` holds one kernel's function pointer (through ctypes) and splits the kernel's
parallel range across a small thread pool; ctypes releases the GIL for the duration of each
call, so the threads really run in parallel. ``PYVTA_THREADS`` sets the thread count (default:
the number of CPUs this process may use).

Parallel calls go through the native pool of :mod:`.pool` (hand-off in a few microseconds,
work sharing in chunks) where it runs (Linux x86-64; ``PYVTA_NATIVE_POOL=0`` turns it off),
otherwise through a :class:`~concurrent.futures.ThreadPoolExecutor` (about 25 us per call, so
only big kernels are split there).
"""

from __future__ import annotations

import ctypes
import os
import time
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .compiler import get_compiler
from .pool import MAX_PTRS, get_pool
from .renderer import Kernel

__all__ = ["Program", "ThreadChoice", "num_threads"]

# Below this much work (elements touched, weighted by the kernel's cost per element) a kernel
# runs on the calling thread only. Through the executor a hand-off costs tens of
# microseconds, more than a memory-bound pass over a few megabytes takes. The native pool
# hands off in a few microseconds, but a parallel call also waits for the slowest thread:
# on a machine whose cores are busy with other processes (the project's shared 2-core
# machines, load 5-7) a second thread was measured to make 50-300 us kernels slower at the
# median (element-wise passes +20-100 %), so :class:`ThreadChoice` times both modes and
# keeps each kernel on a single thread whenever splitting it is measured slower. With that
# guard the native pool takes kernels from 64K on: on an idle 2-core EPYC (Zen 3) VM a
# float32 Add split in two took 9.9 us at 64K elements against 15.6 us on one thread and
# 0.021 ms against 0.032 ms at 200K (a ResNet stage-1 map; each core streams its half from
# the shared L3 at its own bandwidth); at 32K the hand-off ate the gain (7.2 vs 6.6 us).
_PARALLEL_MIN_WORK = 1 << 21
_NATIVE_MIN_WORK = 1 << 16
#: Chunks per thread in the native pool, at least: enough that a late or slow thread costs
#: little.
_CHUNKS_PER_THREAD = 8
#: Work per chunk, at most (about 30-60 us of a GEMM): long kernels are cut finer, so the
#: thread that finishes first waits at most one short chunk for the other (a 197x768x768
#: MatMul in 16 chunks of 150 us often waited 100 us for the last one).
_CHUNK_WORK = 1 << 17
_MAX_CHUNKS = 256

_POOL = None


def num_threads() -> int:
    """Threads a kernel may use (``PYVTA_THREADS``, default the CPUs available)."""
    env = os.environ.get("PYVTA_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:     # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _pool():
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(1, num_threads() - 1),
                                   thread_name_prefix="pyvta-cpu")
    return _POOL


_ADDRESSES: dict = {}


def _address(a: np.ndarray) -> int:
    """The data address of ``a``; cached because ``a.ctypes.data`` costs over a microsecond.

    Entries hold weak references: a dead array's entry never matches (its id may be reused
    by a new array), and the cache keeps no array alive. numpy never moves an array's data.
    """
    hit = _ADDRESSES.get(id(a))
    if hit is not None and hit[0]() is a:
        return hit[1]
    if len(_ADDRESSES) > 4096:
        _ADDRESSES.clear()
    addr = a.ctypes.data
    try:
        _ADDRESSES[id(a)] = (weakref.ref(a), addr)
    except TypeError:       # pragma: no cover - objects without weak references
        pass
    return addr


class Program:
    """A compiled :class:`~.renderer.Kernel`, callable on numpy arrays."""

    def __init__(self, kernel: Kernel, compiler=None):
        self.kernel = kernel
        compiler = compiler or get_compiler()
        addr = compiler.load(kernel.ir, kernel.symbol)
        proto = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * kernel.n_ptrs),
                                 ctypes.c_int64, ctypes.c_int64)
        self._fn = proto(addr)
        self._addr = addr
        self._compiler = compiler       # owns the engine holding the code: keep it alive
        self.threads = num_threads()
        # Decided once: which pool, and whether the kernel is big enough for it.
        work = kernel.extent * kernel.work_per_item
        self._pool = None
        if os.environ.get("PYVTA_NATIVE_POOL", "1") != "0" and kernel.n_ptrs <= MAX_PTRS \
                and min(self.threads, kernel.extent) > 1 and work >= _NATIVE_MIN_WORK:
            self._pool = get_pool(self.threads)
        self._chunks = min(kernel.extent, max(self.threads * _CHUNKS_PER_THREAD,
                                              min(work // _CHUNK_WORK, _MAX_CHUNKS)))
        self._serial = self._pool is None and (min(self.threads, kernel.extent) <= 1
                                               or work < _PARALLEL_MIN_WORK)
        self.choice = None if self._serial else ThreadChoice()

    def __call__(self, *arrays: np.ndarray) -> None:
        self.call_ptrs(self.pointers(arrays))

    def pointers(self, arrays) -> list:
        """The data addresses of ``arrays``, checked against the kernel's buffer count."""
        if len(arrays) != self.kernel.n_ptrs:
            raise ValueError(f"kernel takes {self.kernel.n_ptrs} buffers, not {len(arrays)}")
        return [_address(a) for a in arrays]

    def call_ptrs(self, ptrs: list) -> None:
        """Run the kernel on buffer addresses from :meth:`pointers` (the caller keeps the
        arrays alive)."""
        extent = self.kernel.extent
        if self._serial:
            self._fn(*ptrs, 0, extent)
            return
        choice = self.choice
        if choice.skip:         # a call of the chosen mode that is not timed
            choice.skip -= 1
            if not (choice.parallel and self._run_parallel(ptrs, extent)):
                self._fn(*ptrs, 0, extent)
            return
        t0 = time.perf_counter()
        parallel = choice.next_parallel(t0)
        if parallel:
            parallel = self._run_parallel(ptrs, extent)
        if not parallel:
            self._fn(*ptrs, 0, extent)
        t1 = time.perf_counter()
        choice.record(parallel, t1 - t0,
                      not parallel or self._pool is None or self._pool.last_helped, t1)

    def _run_parallel(self, ptrs, extent) -> bool:
        if self._pool is not None:
            return self._pool.run(self._addr, ptrs, extent, self._chunks)
        nt = min(self.threads, extent)
        bounds = [extent * t // nt for t in range(nt + 1)]
        futures = [_pool().submit(self._fn, *ptrs, bounds[t], bounds[t + 1])
                   for t in range(1, nt)]
        self._fn(*ptrs, bounds[0], bounds[1])
        for f in futures:
            f.result()
        return True


class ThreadChoice:
    """Chooses, per kernel, between a split (parallel) and a single-thread call by timing both.

    A parallel call waits for its slowest thread; when the machine's cores are busy with
    other processes a worker is often preempted, and a split kernel was measured to take
    twice as long as on one thread (convolution GEMMs on the project's shared 2-core
    machines, load 3-7) while on an idle machine it takes half as long. So the first calls
    alternate the two modes (``PROBES`` each), then the mode with the lower median of its
    last ``PROBES`` times runs, and every ``REPROBE``-th call times the other mode once, so
    the choice follows the load. ``PYVTA_ADAPTIVE_THREADS=0`` always splits.

    The single thread must win by ``SERIAL_MARGIN`` to be chosen: a parallel call that meets
    a burst of load (e.g. OpenBLAS threads still spinning after numpy's matmul, measured on
    an idle machine) takes about as long as a serial one, so two or three such probes out of
    five made a 197x768x768 MatMul settle on one thread (2.4 ms instead of 1.3 ms) when both
    medians were within 5 % of each other. A busy machine's slowdown (2x) still exceeds it.
    The margin only protects a split that works: when no worker ran a chunk in any of the
    last ``PROBES`` parallel calls (the native pool reports it; its workers could not get a
    CPU in time), a parallel call is a serial one plus the hand-off, and the plain faster
    median decides. The same holds when even the best parallel call is not ``SPLIT_GAIN``
    faster than the best serial one: then splitting only adds the hand-off and exposure to
    the other core's load. A split that works shows it in its undisturbed probes (the
    MatMul above: 1.3 ms at best against 2.4 ms serial).
    """

    PROBES = 5
    REPROBE = 50
    SERIAL_MARGIN = 0.85
    SPLIT_GAIN = 0.9
    #: No adaptive kernel call for this long (seconds) means the process was idle or busy
    #: elsewhere: the other CPUs have gone idle and come back slowly ...
    IDLE_GAP = 0.01
    #: ... so for this long after such a gap calls are not timed, and kernels whose split
    #: has ever worked run split (which brings the other CPUs back to speed). Measured on
    #: the project's 2-core EPYC VM after a 0.25 s pause: a 200K-element Add split in two
    #: took 42, 34, 31, 27, 25 and 24 us in successive 5 ms windows, settling at 21 us,
    #: while one thread ran at 32 us from the start. Probes in that ramp made the split look
    #: slower than one thread, and a kernel settled on one thread never warmed the other CPU
    #: again, so its re-probes kept meeting a cold CPU.
    WARMUP = 0.04
    #: After a timed call of the chosen mode shorter than ``SKIP_BELOW`` seconds, this many
    #: calls run untimed: the bookkeeping of a timed call costs about 2 us in CPython, 10 %
    #: of a split 200K-element Add (the probes and re-probes count timed calls only).
    SKIP = 3
    SKIP_BELOW = 1e-4
    #: the clock (tests replace it)
    clock = staticmethod(time.perf_counter)
    _last_end = float("-inf")       # process-wide: when an adaptive call last ended
    _warm_until = float("-inf")     # process-wide: end of the current warm-up

    def __init__(self):
        self.adaptive = os.environ.get("PYVTA_ADAPTIVE_THREADS", "1") != "0"
        self.times = {True: deque(maxlen=self.PROBES), False: deque(maxlen=self.PROBES)}
        self.helped = deque(maxlen=self.PROBES)    #: whether a worker helped, parallel calls
        self.parallel = True        #: the mode currently chosen
        self.calls = 0
        self._untimed = False       # the current call only wakes the workers: not recorded
        self._then_probe = False    # the next call is a parallel re-probe
        self.best = {True: float("inf"), False: float("inf")}   #: best time ever, per mode
        self._probing = True        # fewer than PROBES times of either mode yet
        self.skip = 0               #: calls left to run untimed in the chosen mode

    def next_parallel(self, now: float | None = None) -> bool:
        """Whether the next call should be split (``now``: the clock, if the caller has it;
        this runs on every call of a kernel, so its common path is a few comparisons)."""
        if not self.adaptive:
            return True
        if now is None:
            now = self.clock()
        cls = ThreadChoice
        if now - cls._last_end > self.IDLE_GAP:
            cls._warm_until = now + self.WARMUP
        if now < cls._warm_until:
            self._untimed = True
            best = self.best
            return best[True] < self.SPLIT_GAIN * best[False] or best[True] == float("inf")
        self._untimed = False
        calls = self.calls = self.calls + 1
        if self._then_probe:
            self._then_probe = False
            return True
        if self._probing:
            return len(self.times[True]) <= len(self.times[False])   # alternate
        if calls % self.REPROBE == 0:
            if self.parallel:
                return False
            # After REPROBE serial calls the pool's workers have gone to sleep, and the first
            # split call pays for waking them (20-30 us measured, as long as the whole
            # 200K-element Add it splits): that call runs untimed and the next one is the
            # probe, as a split call in a run of split calls would find them.
            self._untimed = self._then_probe = True
            return True
        return self.parallel

    def record(self, parallel: bool, seconds: float, helped: bool = True,
               end: float | None = None) -> None:
        """Account one call's time in the mode it actually ran in (``helped``: for a parallel
        call, whether another thread ran part of it; ``end``: the clock at its end)."""
        if not self.adaptive:
            return
        ThreadChoice._last_end = self.clock() if end is None else end
        if self._untimed:
            return
        if seconds < self.best[parallel] and (helped or not parallel):
            self.best[parallel] = seconds
        times = self.times[parallel]
        times.append(seconds)
        if parallel:
            self.helped.append(helped)
        # The decision is revisited after every call of the other mode (a probe) and after
        # every PROBES calls of the chosen one (its median cannot move faster than that much
        # by new times alone; sorting on every call cost a microsecond per call).
        if parallel == self.parallel and not self._probing and seconds < self.SKIP_BELOW:
            self.skip = self.SKIP
        if parallel == self.parallel and self.calls % self.PROBES:
            return
        par, ser = self.times[True], self.times[False]
        if len(par) == self.PROBES and len(ser) == self.PROBES:
            self._probing = False
            works = any(self.helped) and min(par) < self.SPLIT_GAIN * min(ser)
            margin = self.SERIAL_MARGIN if works else 1.0
            self.parallel = sorted(ser)[self.PROBES // 2] >= margin * sorted(par)[self.PROBES // 2]
