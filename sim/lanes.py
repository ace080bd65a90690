"""The two-lane compute module of the timing model (the "lanes" design, see ``hw/compute.py``).

The compute module dispatches its instructions in program order, at most one per cycle, into
two in-order lanes: lane G runs GEMMs (``reset_reg = 0``), lane A runs ALU instructions and
GEMM resets. Each lane holds an executing instruction and a one-entry "next" register. The
ACC/OUT SRAMs are split in two banks by the top bit of the ACC index; a GEMM/ALU instruction
only dispatches while the other lane has no instruction in flight on one of its banks. Its
bank set comes from a scanner that reads its micro-ops (one per cycle) while the instruction
ahead of it waits for dispatch; the scanner never runs ahead of a LOAD UOP. Token pushes are
deferred: a pushing instruction enters a small in-order FIFO whose head fires once every
instruction up to it has completed. LOAD UOP/ACC (with data) and FINISH wait for both lanes to
be empty (FINISH also for every pending push).

:class:`UopShadow` keeps the micro-op buffer's destination and source indices (read from the
DRAM image at each LOAD UOP) so :func:`bank_set` can compute the bank sets exactly as the RTL's
scanner does; without a DRAM image every non-empty instruction counts as touching both banks.
:class:`ComputeLanes` holds the cycle state of the controller and the lanes; ``sim/timing.py``
drives it instruction by instruction.
"""

from __future__ import annotations

import numpy as np

from ..hw.isa import AluInsn, GemmInsn, insn_layout

__all__ = ["BOTH_BANKS", "LANE_G", "LANE_A", "UopShadow", "bank_set", "lane_of",
           "ComputeLanes"]

BOTH_BANKS = 0b11
LANE_G, LANE_A = 0, 1


def lane_of(insn) -> int:
    """The lane of a GEMM/ALU instruction: G for GEMMs, A for ALU instructions and resets."""
    return LANE_G if isinstance(insn, GemmInsn) and not insn.reset_reg else LANE_A


def _empty(insn) -> bool:
    return insn.uop_end <= insn.uop_bgn or insn.iter_out == 0 or insn.iter_in == 0


class UopShadow:
    """The dst/src fields of the micro-op buffer, as far as the DRAM image tells.

    ``dram``: a :class:`~pyvta.sim.dram.Dram` (or None: the contents are unknown)."""

    def __init__(self, cfg, dram=None):
        self.cfg = cfg
        self.dram = dram
        self.dst = np.zeros(cfg.uop_depth, np.int64)
        self.src = np.zeros(cfg.uop_depth, np.int64)
        self.known = np.zeros(cfg.uop_depth, bool)
        lay = insn_layout(cfg).uop
        self._fields = (lay["dst_idx"], lay["src_idx"])

    def load(self, insn):
        """Apply a LOAD UOP with data (rows of ``x_size`` words at ``dram_base``)."""
        cfg = self.cfg
        n = insn.y_size * insn.x_size
        lo = insn.sram_base
        hi = min(cfg.uop_depth, lo + n)
        if hi <= lo:
            return
        words = None
        if self.dram is not None:
            eb = cfg.uop_elem_bytes
            try:
                rows = [self.dram.read((insn.dram_base + y * insn.x_stride) * eb,
                                       insn.x_size * eb).view("<u4")
                        for y in range(insn.y_size)]
                words = np.concatenate(rows).astype(np.int64)[:hi - lo]
            except ValueError:
                words = None  # outside the image: the RTL reports it; bank sets unknown
        if words is None:
            self.known[lo:hi] = False
            return
        (od, wd), (os_, ws) = self._fields
        self.dst[lo:hi] = (words >> od) & ((1 << wd) - 1)
        self.src[lo:hi] = (words >> os_) & ((1 << ws) - 1)
        self.known[lo:hi] = True


def bank_set(cfg, insn, shadow: UopShadow | None) -> int:
    """Banks (bit b = bank b) of every ACC/OUT element a GEMM/ALU instruction may touch.

    ``lo = min(dst)``, ``hi = max(dst) + (iter_out-1)*dst_factor_out + (iter_in-1)*dst_factor_in``
    over the micro-ops ``[uop_bgn, uop_end)``, and the same for ``src`` of a tensor-operand
    ALU instruction; an index at or beyond the ACC depth means both banks. An instruction with
    no iterations has the empty set (0)."""
    if _empty(insn):
        return 0
    k = slice(insn.uop_bgn, min(insn.uop_end, cfg.uop_depth))
    if shadow is None or insn.uop_end > cfg.uop_depth or not shadow.known[k].all():
        return BOTH_BANKS
    depth = cfg.acc_depth
    half = depth >> 1
    spans = [(shadow.dst[k], insn.dst_factor_out, insn.dst_factor_in)]
    if isinstance(insn, AluInsn) and not insn.use_imm:
        spans.append((shadow.src[k], insn.src_factor_out, insn.src_factor_in))
    mask = 0
    for idx, f_out, f_in in spans:
        lo = int(idx.min())
        hi = int(idx.max()) + (insn.iter_out - 1) * f_out + (insn.iter_in - 1) * f_in
        if hi >= depth:
            return BOTH_BANKS
        mask |= (1 << (hi // half + 1)) - (1 << (lo // half))
    return mask


class ComputeLanes:
    """Cycle state of the two-lane compute module (one instance per timing pass).

    The timing model asks :meth:`earliest` for the first cycle an instruction can be
    dispatched (tokens aside), then reports the dispatch with :meth:`dispatch_loop`,
    :meth:`dispatch_other` and :meth:`push`. ``k`` holds the constants (see
    ``sim/timing._Constants``: ``scan_latency``, ``scan_fifo``, ``issue_delay``, ``drain_g``,
    ``drain_a``, ``bank_gap``, ``push_delay``, ``push_fifo``)."""

    def __init__(self, k):
        self.k = k
        self.disp = []              # dispatch cycles, in program order
        self.scan_next = 0          # the scanner's first stage takes the next instruction
        self.scan_block = 0         # no scanning before this (a LOAD UOP in progress)
        self.disp_block = 0         # no dispatch before this (a LOAD in progress)
        self.lane_issue_end = [0, 0]   # cycle after the lane's last micro-op issue
        self.lane_next_free = [0, 0]   # the lane's next register is free from here
        self.bank_done = [[0, 0], [0, 0]]  # per lane, per bank: last write done
        self.all_done = 0           # every dispatched instruction completed (quiet)
        self.fires = []             # fire cycles of the pushes, in order
        self.last_fire = 0

    # --- the scanner and dispatch stage ----------------------------------------------------------
    def _disp_back(self, j: int) -> int:
        return self.disp[-j] if len(self.disp) >= j else -1

    def scan(self, t_avail: int, scan_uops: int) -> tuple[int, int, int]:
        """The instruction at the queue head from ``t_avail`` (``scan_uops`` micro-ops to
        read, 0 for one that is not scanned): (cycle the scanner takes it, cycles it holds
        the scanner's first stage, cycle it is at the head of the scanner's output FIFO).

        The scanner's first stage reads one micro-op per cycle (an unscanned instruction
        takes one cycle); two more stages and a ``scan_fifo``-entry output FIFO follow, so
        it runs ahead of dispatch by a few instructions, and stalls when they all wait."""
        k = self.k
        n = max(scan_uops, 1)
        t_in = max(t_avail, self.scan_next, self._disp_back(k.scan_fifo + 2) + 1)
        # Only micro-op reads wait for a LOAD UOP in progress.
        t_read = max(t_in, self.scan_block) if scan_uops else t_in
        head = max(t_read + n + k.scan_latency, self._disp_back(k.scan_fifo) + 1,
                   self._disp_back(1) + 1)
        return t_in, n, head

    def earliest(self, insn, lane, banks, t_ready, pushes: bool, needs_quiet: bool,
                 finish: bool) -> int:
        """Earliest dispatch from ``t_ready`` under the lane, bank and FIFO rules."""
        d = max(t_ready, self.disp_block)
        if lane is not None:
            d = max(d, self.lane_next_free[lane])
            other = 1 - lane
            for b in (0, 1):
                if banks >> b & 1:
                    d = max(d, self.bank_done[other][b] + self.k.bank_gap)
        if pushes and len(self.fires) >= self.k.push_fifo:
            d = max(d, self.fires[-self.k.push_fifo] + 1)
        if needs_quiet:
            d = max(d, self.all_done)
        if finish:
            d = max(d, self.all_done, self.last_fire + 1)
        return d

    def _dispatched(self, scan, d):
        t_in, n, head = scan
        self.disp.append(d)
        # The first stage is free once the instruction moved on (its reads done).
        self.scan_next = max(t_in + n, head - self.k.scan_latency)

    def dispatch_loop(self, lane, banks, scan, d: int, issue_cycles: int) -> tuple[int, int, int]:
        """A GEMM/ALU instruction (``scan`` from :meth:`scan`) dispatched at ``d`` into
        ``lane``: (first issue cycle, cycle after the last issue, cycle of its last ACC/OUT
        write)."""
        k = self.k
        self._dispatched(scan, d)
        s = max(d + k.issue_delay, self.lane_issue_end[lane])
        e = s + issue_cycles
        done = e + (k.drain_g if lane == LANE_G else k.drain_a)
        self.lane_issue_end[lane] = e
        # The next register frees in the cycle the instruction ahead issues its last slot.
        self.lane_next_free[lane] = max(d + 1, s - 1)
        for b in (0, 1):
            if banks >> b & 1:
                self.bank_done[lane][b] = max(self.bank_done[lane][b], done)
        self.all_done = max(self.all_done, done)
        return s, e, done

    def dispatch_other(self, scan, d: int, done: int | None = None, load: bool = False):
        """Any other instruction (``scan`` from :meth:`scan`) dispatched at ``d``; a LOAD
        with data (``load``) completes at ``done`` and nothing dispatches before."""
        self._dispatched(scan, d)
        if done is not None:
            self.all_done = max(self.all_done, done)
            if load:
                self.disp_block = max(self.disp_block, done)

    def block_scanner(self, until: int):
        """A LOAD UOP: the scanner reads no micro-op before it is written."""
        self.scan_block = max(self.scan_block, until)

    def push(self, d: int) -> int:
        """A push tagged with the instruction dispatched at ``d``: its fire cycle."""
        fire = max(self.all_done, d + 1, self.last_fire + 1) + self.k.push_delay
        self.fires.append(fire)
        self.last_fire = fire
        return fire

    @property
    def quiet(self) -> int:
        return self.all_done
