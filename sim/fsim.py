"""The functional simulator: the executable definition of the pyvta instruction set.

It runs an instruction stream against a :class:`~pyvta.sim.dram.Dram` image bit-exactly and
models the decoupled architecture: a fetch stage dispatches instructions in program order into
three bounded command queues (load, compute, store); each module executes its own queue in
order and blocks on the four bounded dependency-token queues. A stream that can never finish is
reported as a :class:`DeadlockError` naming the stuck instructions, never a hang.

Tokens carry vector clocks, so FINISH is checked against the happens-before order the tokens
establish (every LOAD and STORE must be ordered before it), not just against this simulator's
own schedule: a program that only works because fsim happened to run the store first is an
error here, as it would be a race on hardware.

Every instruction is executed with whole-array numpy operations: no Python loop runs per MAC or
per lane (see ``docs/isa.md`` for the semantics this file implements).
"""

from __future__ import annotations

import collections
import random
from dataclasses import dataclass, field

import numpy as np

from ..hw.config import HwConfig, load_config
from ..hw.isa import (INSN_BYTES, AluOp, MemType, Opcode, decode, decode_program, format_insn,
                      insn_layout)
from .dram import Dram, DramError

__all__ = ["SimError", "DeadlockError", "Counters", "FunctionalSimulator", "run_program",
           "route", "LOAD_Q", "COMPUTE_Q", "STORE_Q"]

LOAD_Q, COMPUTE_Q, STORE_Q = "load", "compute", "store"
_MODULES = (LOAD_Q, COMPUTE_Q, STORE_Q)

# Token queues: (producer, consumer).
_L2C, _C2L, _C2S, _S2C = "load->compute", "compute->load", "compute->store", "store->compute"


class SimError(RuntimeError):
    """An instruction stream is invalid or accesses memory out of range."""


class DeadlockError(SimError):
    """The instruction stream can never complete (tokens are never pushed, or queues fill)."""


@dataclass
class Counters:
    """What a run did. All counts are totals over the program."""
    #: Instructions executed, by kind ("LOAD.INP", "GEMM", "ALU.ADD", "STORE", "FINISH", ...).
    insns: dict = field(default_factory=collections.Counter)
    #: Bytes moved between DRAM and each buffer (loads and stores), by memory type name.
    bytes: dict = field(default_factory=collections.Counter)
    #: Multiply-accumulates done by GEMM instructions.
    macs: int = 0
    #: GEMM micro-op executions (loop iterations).
    gemm_uops: int = 0
    #: ALU micro-op executions (loop iterations).
    alu_uops: int = 0
    #: ALU operations on individual lanes.
    alu_lane_ops: int = 0

    @property
    def total_insns(self) -> int:
        return sum(self.insns.values())

    def summary(self) -> str:
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.insns.items()))
        moved = " ".join(f"{k}={v}B" for k, v in sorted(self.bytes.items()))
        return (f"{self.total_insns} instructions ({kinds}); moved {moved or 'nothing'}; "
                f"{self.macs} MACs; {self.alu_lane_ops} ALU lane-ops")

    def to_dict(self) -> dict:
        return {"insns": dict(self.insns), "bytes": dict(self.bytes), "macs": self.macs,
                "gemm_uops": self.gemm_uops, "alu_uops": self.alu_uops,
                "alu_lane_ops": self.alu_lane_ops}


def route(insn) -> str:
    """The module an instruction is dispatched to (VTA's fetch routing)."""
    op = insn.opcode
    if op is Opcode.LOAD:
        return LOAD_Q if insn.memory_type in (MemType.INP, MemType.WGT) else COMPUTE_Q
    if op is Opcode.STORE:
        return STORE_Q
    return COMPUTE_Q


# Which token queue each flag of each module refers to.
_POPS = {LOAD_Q: {"pop_next_dep": _C2L},
         COMPUTE_Q: {"pop_prev_dep": _L2C, "pop_next_dep": _S2C},
         STORE_Q: {"pop_prev_dep": _C2S}}
_PUSHES = {LOAD_Q: {"push_next_dep": _L2C},
           COMPUTE_Q: {"push_prev_dep": _C2L, "push_next_dep": _C2S},
           STORE_Q: {"push_prev_dep": _S2C}}


class _Where:
    """"instruction N (text)", formatted only when an error message needs it."""

    def __init__(self, idx, insn):
        self.idx, self.insn = idx, insn

    def __format__(self, spec):
        return f"instruction {self.idx} ({format_insn(self.insn)})"


def _decode_memo(blob: bytes, cfg) -> list:
    """``decode_program`` that decodes each distinct word once (compiled programs repeat many
    words; instructions are immutable, so repeats can share one object)."""
    if len(blob) % INSN_BYTES:
        return decode_program(blob, cfg)  # raises the truncation error
    memo = {}
    out = []
    for i in range(0, len(blob), INSN_BYTES):
        word = blob[i:i + INSN_BYTES]
        insn = memo.get(word)
        if insn is None:
            insn = memo[word] = decode(word, cfg, i // INSN_BYTES)
        out.append(insn)
    return out


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Start index of every run of equal values in a sorted, non-empty array."""
    change = np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1
    return np.concatenate((np.zeros(1, np.int64), change))


def _loop_indices(base: np.ndarray, iter_out: int, iter_in: int, f_out: int, f_in: int):
    """Index of every iteration of the loop nest, in execution order (i, j, k), flattened."""
    i = np.arange(iter_out, dtype=np.int64)[:, None, None] * f_out
    j = np.arange(iter_in, dtype=np.int64)[None, :, None] * f_in
    return (base[None, None, :] + i + j).reshape(-1)


class FunctionalSimulator:
    """Bit-exact, vectorised execution of instruction streams for one configuration.

    Parameters
    ----------
    cfg : HwConfig or str
        The hardware configuration (or a preset name).
    dram : Dram
        The memory the program's DMA reads and writes.
    schedule_seed : int, optional
        Interleave the modules at random (seeded): each round visits them in a random order
        and lets each run a random number of instructions, and fetch dispatches a random number.
        A program whose tokens order every conflicting access gives the same result under every
        schedule; running a few seeds is a cheap race detector for compilers and generators.
        ``None`` (default) uses the fixed order compute, load, store.
    """

    def __init__(self, cfg: HwConfig | str, dram: Dram, *, schedule_seed: int | None = None):
        self.schedule_seed = schedule_seed
        self.cfg = cfg = load_config(cfg)
        self.layout = insn_layout(cfg)
        self.dram = dram
        b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
        self.uop_dst = np.zeros(cfg.uop_depth, np.int64)
        self.uop_src = np.zeros(cfg.uop_depth, np.int64)
        self.uop_wgt = np.zeros(cfg.uop_depth, np.int64)
        self.inp = np.zeros((cfg.inp_depth, b, bi), np.int8)
        self.wgt = np.zeros((cfg.wgt_depth, bo, bi), np.int8)
        self.acc = np.zeros((cfg.acc_depth, b, bo), np.int32)
        self.out = np.zeros((cfg.out_depth, b, bo), np.int8)
        self.counters = Counters()
        # (numpy dtype of one element's scalars, element shape, buffer) per memory type.
        self._mem = {
            MemType.INP: (np.dtype("i1"), (b, bi), self.inp),
            MemType.WGT: (np.dtype("i1"), (bo, bi), self.wgt),
            MemType.ACC: (np.dtype("<i4"), (b, bo), self.acc),
            MemType.OUT: (np.dtype("i1"), (b, bo), self.out),
            MemType.UOP: (np.dtype("<u4"), (), None),
        }

    # ------------------------------------------------------------------------------------------
    # Scheduling
    # ------------------------------------------------------------------------------------------
    def run(self, program) -> Counters:
        """Execute a program (bytes or a list of decoded instructions) until FINISH."""
        insns = _decode_memo(bytes(program), self.cfg) if isinstance(
            program, (bytes, bytearray, memoryview)) else list(program)
        if not insns:
            raise SimError("the instruction stream is empty: a program must end with FINISH")
        self._validate_static(insns)
        cfg = self.cfg
        queues = {LOAD_Q: collections.deque(), COMPUTE_Q: collections.deque(),
                  STORE_Q: collections.deque()}
        # Each token carries the vector clock of its producer (instructions completed per module
        # that happen before the push), so FINISH can check it is ordered after every load and
        # store by tokens, not merely scheduled after them by chance.
        tokens = {_L2C: collections.deque(), _C2L: collections.deque(),
                  _C2S: collections.deque(), _S2C: collections.deque()}
        clocks = {m: {LOAD_Q: 0, COMPUTE_Q: 0, STORE_Q: 0} for m in _MODULES}
        targets = [route(i) for i in insns]
        totals = collections.Counter(targets)
        depth = cfg.dep_queue_depth
        rng = None if self.schedule_seed is None else random.Random(self.schedule_seed)
        pc = 0
        n = len(insns)
        while True:
            progress = False
            budget = n if rng is None else rng.randint(1, 8)
            while pc < n and budget and len(queues[targets[pc]]) < cfg.cmd_queue_depth:
                queues[targets[pc]].append(pc)
                pc += 1
                budget -= 1
                progress = True
            # Compute first: the most adversarial order for FINISH (see _finish).
            order = (COMPUTE_Q, LOAD_Q, STORE_Q) if rng is None else rng.sample(_MODULES, 3)
            for module in order:
                q = queues[module]
                clock = clocks[module]
                budget = n if rng is None else rng.randint(1, 4)
                while q and budget:
                    budget -= 1
                    idx = q[0]
                    insn = insns[idx]
                    pops = [t for f, t in _POPS[module].items() if getattr(insn, f)]
                    pushes = [t for f, t in _PUSHES[module].items() if getattr(insn, f)]
                    if any(not tokens[t] for t in pops) or \
                            any(len(tokens[t]) >= depth for t in pushes):
                        break
                    for t in pops:
                        for m, c in tokens[t].popleft().items():
                            if c > clock[m]:
                                clock[m] = c
                    if insn.opcode is Opcode.FINISH:
                        q.popleft()
                        self._finish(idx, pc, n, queues, insns, clock, totals, targets)
                        self._execute(insn, idx)
                        return self.counters
                    self._execute(insn, idx)
                    clock[module] += 1
                    for t in pushes:
                        tokens[t].append(dict(clock))
                    q.popleft()
                    progress = True
            if pc == n and not any(queues.values()):
                raise SimError(f"the program ended without FINISH (last instruction {n - 1}: "
                               f"{format_insn(insns[n - 1])})")
            if not progress:
                raise DeadlockError(self._deadlock_report(insns, queues, tokens, pc, targets))

    def _validate_static(self, insns):
        """Checks that need no execution: routing rules and flags each module may use."""
        for idx, insn in enumerate(insns):
            op = insn.opcode
            where = _Where(idx, insn)
            if op is Opcode.LOAD and insn.memory_type is MemType.OUT:
                raise SimError(f"{where}: LOAD of memory type OUT is not supported; "
                               f"load results back as ACC")
            if op is Opcode.STORE and insn.memory_type is not MemType.OUT:
                raise SimError(f"{where}: STORE must have memory type OUT, "
                               f"not {insn.memory_type.name}")
            module = route(insn)
            allowed = set(_POPS[module]) | set(_PUSHES[module])
            for flag in ("pop_prev_dep", "pop_next_dep", "push_prev_dep", "push_next_dep"):
                if getattr(insn, flag) and flag not in allowed:
                    raise SimError(f"{where}: {flag} is set, but the {module} module has no "
                                   f"{'previous' if 'prev' in flag else 'next'} stage")

    def _finish(self, idx, pc, n, queues, insns, clock, totals, targets):
        if pc < n or len(queues[COMPUTE_Q]):
            nxt = queues[COMPUTE_Q][0] if queues[COMPUTE_Q] else pc
            raise SimError(f"instruction {idx} is FINISH but instruction {nxt} follows it: "
                           f"FINISH must be the last instruction")
        pending = {m: list(q) for m, q in queues.items() if q}
        if pending:
            detail = "; ".join(f"{m} module: instructions {', '.join(map(str, p[:8]))}"
                               + (" ..." if len(p) > 8 else "") for m, p in pending.items())
            raise SimError(
                f"FINISH (instruction {idx}) can run before earlier instructions complete "
                f"({detail}): make the last STORE push a store->compute token and pop it "
                f"before FINISH")
        for module in (LOAD_Q, STORE_Q):
            if clock[module] < totals[module]:
                # The first instruction of that module FINISH is not ordered after.
                order = [i for i, t in enumerate(targets) if t == module]
                first = order[clock[module]]
                raise SimError(
                    f"FINISH (instruction {idx}) is not ordered after instruction {first} "
                    f"({format_insn(insns[first])}) by dependency tokens: on hardware it could "
                    f"raise done before that {module} completes; make the last "
                    f"{'STORE push a store->compute' if module == STORE_Q else 'LOAD push a load->compute'}"
                    f" token and pop it before FINISH")

    def _deadlock_report(self, insns, queues, tokens, pc, targets) -> str:
        # One line, so the CLI's "pyvta: error: ..." stays a single clear line.
        lines = []
        for module in (LOAD_Q, COMPUTE_Q, STORE_Q):
            q = queues[module]
            if not q:
                continue
            idx = q[0]
            insn = insns[idx]
            waits = [f"a {t} token ({f})" for f, t in _POPS[module].items()
                     if getattr(insn, f) and not tokens[t]]
            full = [f"room in the full {t} queue ({f})" for f, t in _PUSHES[module].items()
                    if getattr(insn, f) and len(tokens[t]) >= self.cfg.dep_queue_depth]
            lines.append(f"{module} module is stuck at instruction {idx} "
                         f"({format_insn(insn)}): waiting for {' and '.join(waits + full)}")
        if pc < len(insns):
            lines.append(f"fetch is stalled at instruction {pc}: the {targets[pc]} command "
                         f"queue is full ({self.cfg.cmd_queue_depth} entries)")
        return ("the instruction stream deadlocks, no module can make progress: "
                + "; ".join(lines))

    # ------------------------------------------------------------------------------------------
    # Execution
    # ------------------------------------------------------------------------------------------
    def _execute(self, insn, idx):
        op = insn.opcode
        try:
            if op is Opcode.LOAD:
                self._load(insn)
                self.counters.insns[f"LOAD.{insn.memory_type.name}"] += 1
            elif op is Opcode.STORE:
                self._store(insn)
                self.counters.insns["STORE"] += 1
            elif op is Opcode.GEMM:
                self._gemm(insn)
                self.counters.insns["GEMM"] += 1
            elif op is Opcode.ALU:
                self._alu(insn)
                self.counters.insns[f"ALU.{insn.alu_opcode.name}"] += 1
            else:
                self.counters.insns["FINISH"] += 1
        except (SimError, DramError) as exc:
            raise SimError(f"instruction {idx} ({format_insn(insn)}): {exc}") from None

    def _dram_rows(self, insn, eb):
        """Byte offsets into the DRAM image of the rows a LOAD/STORE touches, bounds-checked."""
        dram = self.dram
        start = insn.dram_base * eb
        last = (insn.dram_base + (insn.y_size - 1) * insn.x_stride + insn.x_size) * eb
        if start < dram.base or last > dram.end:
            raise SimError(
                f"DRAM range [{start:#x}, {last:#x}) is outside the DRAM image "
                f"[{dram.base:#x}, {dram.end:#x})")
        return start - dram.base

    def _load(self, insn):
        mt = insn.memory_type
        dtype, shape, buf = self._mem[mt]
        eb = {MemType.UOP: self.cfg.uop_elem_bytes, MemType.INP: self.cfg.inp_elem_bytes,
              MemType.WGT: self.cfg.wgt_elem_bytes, MemType.ACC: self.cfg.acc_elem_bytes}[mt]
        depth = {MemType.UOP: self.cfg.uop_depth, MemType.INP: self.cfg.inp_depth,
                 MemType.WGT: self.cfg.wgt_depth, MemType.ACC: self.cfg.acc_depth}[mt]
        pads = (insn.y_pad_0, insn.y_pad_1, insn.x_pad_0, insn.x_pad_1)
        if any(pads) and mt not in (MemType.INP, MemType.ACC):
            raise SimError(f"padding is only supported on INP and ACC loads, not {mt.name}")
        if insn.x_size == 0 or insn.y_size == 0:
            return  # a synchronisation-only LOAD moves no data
        rows = insn.y_pad_0 + insn.y_size + insn.y_pad_1
        cols = insn.x_pad_0 + insn.x_size + insn.x_pad_1
        if insn.sram_base + rows * cols > depth:
            raise SimError(f"writes {mt.name} elements [{insn.sram_base}, "
                           f"{insn.sram_base + rows * cols}), outside the {mt.name} buffer "
                           f"({depth} elements)")
        off = self._dram_rows(insn, eb)
        src = np.lib.stride_tricks.as_strided(
            self.dram.mem[off:], shape=(insn.y_size, insn.x_size * eb),
            strides=(insn.x_stride * eb, 1), writeable=False)
        data = np.ascontiguousarray(src).view(dtype).reshape(
            (insn.y_size, insn.x_size) + shape)
        self.counters.bytes[mt.name] += insn.y_size * insn.x_size * eb
        if mt is MemType.UOP:
            lay = self.layout.uop
            words = data.reshape(-1).astype(np.int64)
            sl = slice(insn.sram_base, insn.sram_base + words.size)
            for name, arr in (("dst_idx", self.uop_dst), ("src_idx", self.uop_src),
                              ("wgt_idx", self.uop_wgt)):
                o, w = lay[name]
                arr[sl] = (words >> o) & ((1 << w) - 1)
            return
        block = np.zeros((rows, cols) + shape, dtype)
        block[insn.y_pad_0:insn.y_pad_0 + insn.y_size,
              insn.x_pad_0:insn.x_pad_0 + insn.x_size] = data
        buf[insn.sram_base:insn.sram_base + rows * cols] = block.reshape((-1,) + shape)

    def _store(self, insn):
        if insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1:
            raise SimError("a STORE cannot have padding")
        if insn.x_size == 0 or insn.y_size == 0:
            return
        if insn.y_size > 1 and insn.x_stride < insn.x_size:
            raise SimError(f"x_stride {insn.x_stride} is smaller than x_size {insn.x_size}: "
                           f"stored rows would overlap")
        n = insn.y_size * insn.x_size
        if insn.sram_base + n > self.cfg.out_depth:
            raise SimError(f"reads OUT elements [{insn.sram_base}, {insn.sram_base + n}), "
                           f"outside the OUT buffer ({self.cfg.out_depth} elements)")
        eb = self.cfg.out_elem_bytes
        off = self._dram_rows(insn, eb)
        dst = np.lib.stride_tricks.as_strided(
            self.dram.mem[off:], shape=(insn.y_size, insn.x_size * eb),
            strides=(insn.x_stride * eb, 1))
        dst[...] = self.out[insn.sram_base:insn.sram_base + n].reshape(insn.y_size, -1).view(
            np.uint8)
        self.counters.bytes["OUT"] += n * eb

    def _loop(self, insn, with_wgt: bool):
        """Destination, source (and weight) indices of every iteration, range-checked."""
        cfg = self.cfg
        if insn.uop_end > cfg.uop_depth or insn.uop_bgn > insn.uop_end:
            raise SimError(f"micro-op range [{insn.uop_bgn}, {insn.uop_end}) is not inside the "
                           f"micro-op buffer (0 to {cfg.uop_depth})")
        k = slice(insn.uop_bgn, insn.uop_end)
        dst = _loop_indices(self.uop_dst[k], insn.iter_out, insn.iter_in,
                            insn.dst_factor_out, insn.dst_factor_in)
        src = _loop_indices(self.uop_src[k], insn.iter_out, insn.iter_in,
                            insn.src_factor_out, insn.src_factor_in)
        checks = [("destination ACC", dst, cfg.acc_depth)]
        if with_wgt:
            wgt = _loop_indices(self.uop_wgt[k], insn.iter_out, insn.iter_in,
                                insn.wgt_factor_out, insn.wgt_factor_in)
            checks += [("source INP", src, cfg.inp_depth), ("WGT", wgt, cfg.wgt_depth)]
        else:
            wgt = None
            if not insn.use_imm:
                checks.append(("source ACC", src, cfg.acc_depth))
        nk = insn.uop_end - insn.uop_bgn
        for what, idx, depth in checks:
            if idx.size and idx.max() >= depth:
                t = int(np.argmax(idx >= depth))
                i, rest = divmod(t, max(1, insn.iter_in * nk))
                j, kk = divmod(rest, max(1, nk))
                raise SimError(
                    f"micro-op {insn.uop_bgn + kk} at iteration (i={i}, j={j}) addresses "
                    f"{what} element {int(idx[t])}, outside the buffer ({depth} elements)")
        return dst, src, wgt

    def _gemm(self, insn):
        dst, src, wgt = self._loop(insn, with_wgt=True)
        if dst.size == 0:
            return
        cfg = self.cfg
        touched = self._touched(dst)
        if insn.reset_reg:
            self.acc[touched] = 0
            self.out[touched] = 0
            self.counters.gemm_uops += dst.size
            return
        if self._gemm_structured(insn, dst, touched):
            return
        lanes = cfg.batch * cfg.block_out
        # Group the iterations by weight tile so each group is one BLAS product. One product
        # row sums BLOCK_IN terms of at most 2**14: exact in float32 for any legal BLOCK_IN.
        order = np.argsort(wgt, kind="stable")
        w_sorted = wgt[order]
        starts = _run_starts(w_sorted)
        bounds = np.append(starts[1:], w_sorted.size)
        x_all = self.inp[src[order]].astype(np.float32).reshape(dst.size, -1, cfg.block_in)
        w_f = self.wgt[w_sorted[starts]].astype(np.float32)     # (groups, bo, bi)
        sizes = bounds - starts
        if np.all(sizes == sizes[0]):
            # Equal groups (the usual case: every weight tile serves as many rows): one
            # batched product over all groups.
            x = x_all.reshape(starts.size, -1, cfg.block_in)
            prod = np.matmul(x, w_f.transpose(0, 2, 1)).reshape(dst.size, lanes)
        else:
            prod = np.empty((dst.size, lanes), np.float32)
            for g, (lo, hi) in enumerate(zip(starts.tolist(), bounds.tolist())):
                prod[lo:hi] = (x_all[lo:hi].reshape(-1, cfg.block_in) @ w_f[g].T).reshape(
                    hi - lo, lanes)
        # Sum per destination: sort by destination and add runs in float64 (exact below 2**53).
        d_sorted = dst[order]
        by_dst = np.argsort(d_sorted, kind="stable")
        d_runs = d_sorted[by_dst]
        run_starts = _run_starts(d_runs)
        sums = np.add.reduceat(prod[by_dst].astype(np.float64), run_starts, axis=0)
        touched = d_runs[run_starts]
        acc = self.acc.reshape(cfg.acc_depth, lanes)
        new = acc[touched].astype(np.int64) + sums.astype(np.int64)
        acc[touched] = new.astype(np.int32)  # wrap-around to int32, as the hardware does
        self.out[touched] = self.acc[touched].astype(np.int8)
        self.counters.gemm_uops += dst.size
        self.counters.macs += dst.size * cfg.macs_per_cycle

    def _touched(self, dst: np.ndarray) -> np.ndarray:
        """The distinct accumulator indices in ``dst``, sorted (a mask beats a sort here)."""
        mask = np.zeros(self.cfg.acc_depth, bool)
        mask[dst] = True
        return np.flatnonzero(mask)

    def _gemm_structured(self, insn, dst, touched) -> bool:
        """Fast exact path for loop nests that are a matrix product per micro-op.

        When one loop axis only reduces (the destination does not move along it) and the other
        only walks rows (the weight does not move along it), each micro-op's iterations form one
        ``(rows x reduction*BLOCK_IN) @ (reduction*BLOCK_IN x BLOCK_OUT)`` product: a single BLAS
        call per micro-op instead of one per weight tile. Products of int8 values summed in
        float32 are exact below 2**24 and in float64 below 2**53; the sums are then added to the
        int32 accumulator with wrap-around. Returns False (nothing done) for other loop nests.
        """
        nk = insn.uop_end - insn.uop_bgn
        if nk > 64:
            return False
        i_out, i_in = insn.iter_out, insn.iter_in
        if (i_in == 1 or insn.dst_factor_in == 0) and (i_out == 1 or insn.wgt_factor_out == 0):
            rows, red = i_out, i_in
            f_dst, f_src_row, f_src_red, f_wgt_red = (insn.dst_factor_out, insn.src_factor_out,
                                                      insn.src_factor_in, insn.wgt_factor_in)
        elif (i_out == 1 or insn.dst_factor_out == 0) and (i_in == 1 or insn.wgt_factor_in == 0):
            rows, red = i_in, i_out
            f_dst, f_src_row, f_src_red, f_wgt_red = (insn.dst_factor_in, insn.src_factor_in,
                                                      insn.src_factor_out, insn.wgt_factor_out)
        else:
            return False
        cfg = self.cfg
        b, bi, bo = cfg.batch, cfg.block_in, cfg.block_out
        # Largest |int8 * int8| is 2**14: a float32 sum of up to 2**10 of them stays exact.
        ftype = np.float32 if red * bi <= 1 << 10 else np.float64
        p = np.arange(rows, dtype=np.int64)
        r = np.arange(red, dtype=np.int64)
        # Sums are kept per touched destination (sorted), not over the whole accumulator.
        sums = np.zeros((touched.size, b, bo), np.float64)
        # Batched products over the micro-ops, in chunks that bound the gathered operands.
        step = max(1, (1 << 20) // max(1, rows * red))
        for u0 in range(insn.uop_bgn, insn.uop_end, step):
            k = slice(u0, min(u0 + step, insn.uop_end))
            src = (self.uop_src[k][:, None, None] + p[None, :, None] * f_src_row
                   + r[None, None, :] * f_src_red)                # (uops, rows, red)
            wgt = self.uop_wgt[k][:, None] + r[None, :] * f_wgt_red  # (uops, red)
            d = self.uop_dst[k][:, None] + p[None, :] * f_dst      # (uops, rows)
            nu = src.shape[0]
            x = self.inp[src].astype(ftype)                       # (uops, rows, red, b, bi)
            x = x.transpose(0, 1, 3, 2, 4).reshape(nu, rows * b, red * bi)
            w = self.wgt[wgt].astype(ftype)                       # (uops, red, bo, bi)
            w = w.transpose(0, 2, 1, 3).reshape(nu, bo, red * bi)
            y = np.matmul(x, w.transpose(0, 2, 1)).reshape(nu * rows, b, bo)
            pos = np.searchsorted(touched, d.reshape(-1))
            if pos.size == touched.size and u0 == insn.uop_bgn and \
                    u0 + step >= insn.uop_end:
                sums[pos] = y          # every destination written exactly once
            else:
                np.add.at(sums, pos, y.astype(np.float64))
        acc = self.acc
        acc[touched] = (acc[touched].astype(np.int64) + sums.astype(np.int64)).astype(
            np.int32)  # wrap-around to int32, as the hardware does
        self.out[touched] = acc[touched].astype(np.int8)
        self.counters.gemm_uops += dst.size
        self.counters.macs += dst.size * cfg.macs_per_cycle
        return True

    def _alu(self, insn):
        dst, src, _ = self._loop(insn, with_wgt=False)
        if dst.size == 0:
            return
        cfg = self.cfg
        self.counters.alu_uops += dst.size
        self.counters.alu_lane_ops += dst.size * cfg.batch * cfg.block_out
        acc = self.acc
        if insn.reset_reg:
            acc[dst] = 0
            self.out[dst] = 0
            return
        op = insn.alu_opcode
        unique_dst = int(np.bincount(dst, minlength=cfg.acc_depth).max()) <= 1
        raw_hazard = False
        if not insn.use_imm:
            # A tensor operand written by an earlier iteration must see the new value.
            t = np.arange(dst.size)
            first_write = np.full(cfg.acc_depth, dst.size, np.int64)
            if unique_dst:
                first_write[dst] = t
            else:
                np.minimum.at(first_write, dst, t)
            raw_hazard = bool(np.any(first_write[src] < t))
        if unique_dst and not raw_hazard:
            a = acc[dst]
            b = np.int32(insn.imm) if insn.use_imm else acc[src]
            acc[dst] = alu_apply(op, a, b)
        elif not raw_hazard and op in _ALU_UFUNC:
            # Reductions into one destination (e.g. max pooling): apply in order.
            b = np.broadcast_to(np.int32(insn.imm), (dst.size,) + acc.shape[1:]) \
                if insn.use_imm else acc[src]
            _ALU_UFUNC[op].at(acc, dst, b)
        else:
            # Order-dependent (rare in compiled code): sequential over iterations, vector per lane.
            for d, s in zip(dst.tolist(), src.tolist()):
                b = np.int32(insn.imm) if insn.use_imm else acc[s]
                acc[d] = alu_apply(op, acc[d], b)
        touched = dst if unique_dst else self._touched(dst)
        self.out[touched] = acc[touched].astype(np.int8)


_ALU_UFUNC = {AluOp.MIN: np.minimum, AluOp.MAX: np.maximum, AluOp.ADD: np.add,
              AluOp.MUL: np.multiply}


def alu_apply(op: AluOp, a: np.ndarray, b) -> np.ndarray:
    """One ALU operation on int32 lanes, with the hardware's wrap-around semantics.

    SHR takes the low 6 bits of the operand as a signed amount in [-32, 31]: a non-negative
    amount is an arithmetic right shift, a negative one a left shift by its magnitude.
    """
    a = np.asarray(a, np.int32)
    b = np.asarray(b, np.int32)
    if op is AluOp.MIN:
        return np.minimum(a, b)
    if op is AluOp.MAX:
        return np.maximum(a, b)
    if op is AluOp.ADD:
        return (a.astype(np.int64) + b).astype(np.int32)
    if op is AluOp.MUL:
        return (a.astype(np.int64) * b).astype(np.int32)
    if op is AluOp.SHR:
        amount = ((b.astype(np.int64) & 63) ^ 32) - 32
        right = a.astype(np.int64) >> np.clip(amount, 0, 31)
        left = a.astype(np.int64) << np.clip(-amount, 0, 32)
        return np.where(amount >= 0, right, left).astype(np.int32)
    raise SimError(f"unknown ALU opcode {op!r}")


def run_program(cfg, program, dram: Dram) -> Counters:
    """Run ``program`` (bytes or instructions) on ``dram`` with the functional simulator."""
    return FunctionalSimulator(cfg, dram).run(program)
