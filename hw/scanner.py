"""The compute module's scanner: ACC/OUT bank sets of GEMM/ALU instructions before dispatch.

Every instruction of the compute command queue passes through the scanner, in order. For a
GEMM/ALU instruction with micro-op iterations the scanner reads its micro-ops
``[uop_bgn, uop_end)`` from its own micro-op buffer read port, one per cycle, and computes::

    lo  = min(uop.dst)
    hi  = max(uop.dst) + (iter_out-1)*dst_factor_out + (iter_in-1)*dst_factor_in
    banks = {bank(lo) .. bank(hi)},   bank(a) = a >> (log_acc_depth - 1)

and, for an ALU instruction with ``use_imm = 0``, the same for ``src`` (which indexes ACC).
``hi >= acc_depth`` (an out-of-range access, which wraps in hardware) gives both banks.
Any other instruction gets an empty bank set and passes straight through.

Pipeline (``n`` = micro-ops of the instruction, 1 for one that is not scanned)::

    S0, n cycles   micro-op read k = uop_bgn .. uop_end-1 (one per cycle); the min/max
                   registers take the micro-op read the cycle before
    S1, 1 cycle    the last micro-op's data: final min/max; products (iter-1)*factor
    S2, 1 cycle    hi = max + products, compare against D/2 and D -> bank set
    out FIFO       two entries; the dispatcher reads its head (first-word fall-through)

So an instruction that enters S0 in cycle c is at the head of the output FIFO in cycle
``c+n+3`` (if the FIFO was empty), and the scanner accepts one instruction every ``n`` cycles:
while the lanes execute instruction ``i`` (at least ``n_i`` cycles per micro-op pass), the
scanner works on ``i+1``. The whole pipeline only stalls when S2 holds an instruction and
the FIFO is full (a registered condition: no path from the dispatcher back into the scanner).

Stale micro-ops: a LOAD UOP with data that entered S0 and has not finished loading (the
compute module pulses ``uop_load_done``) blocks the scan of every later instruction: S0 holds
it without reading until the load is done.
"""

from __future__ import annotations

from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .isa import MemType, Opcode, insn_layout
from .queues import SramReadSignature

__all__ = ["Scanner", "scan_layout"]


def scan_layout():
    """Layout of the scanner's output: the instruction and its 2-bit bank set."""
    return data.StructLayout({"insn": 128, "banks": 2})


class Scanner(wiring.Component):
    """Computes bank sets (see the module docstring).

    Ports
    -----
    cmd : In(stream.Signature(128))
        Instructions, in program order.
    out : Out(stream.Signature(scan_layout()))
        The same instructions with their bank sets.
    uop_rd : Out(SramReadSignature)
        The scanner's micro-op buffer read port.
    uop_load_done : In(1)
        Pulse: a LOAD UOP (with data) finished writing the micro-op buffer.
    busy : Out(1)
        An instruction is in the scanner.
    moving : Out(1)
        An instruction in the scanner advances this cycle.
    """

    def __init__(self, cfg):
        self._cfg = cfg
        self._lay = lay = insn_layout(cfg)
        super().__init__({
            "cmd": In(stream.Signature(128)),
            "out": Out(stream.Signature(scan_layout())),
            "uop_rd": Out(SramReadSignature(lay.uop_width, 32)),
            "uop_load_done": In(1),
            "busy": Out(1),
            "moving": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self._cfg, self._lay
        aw, sw = lay.dst_width, lay.src_width
        half = cfg.acc_depth // 2
        depth = cfg.acc_depth

        m.submodules.fifo = fifo = SyncFIFO(width=130, depth=2)
        m.d.comb += [self.out.valid.eq(fifo.r_rdy), self.out.payload.eq(fifo.r_data),
                     fifo.r_en.eq(self.out.ready)]

        s0_valid, s1_valid, s2_valid = Signal(), Signal(), Signal()
        s0_raw, s1_raw, s2_raw = Signal(128), Signal(128), Signal(128)
        s0_scan, s1_scan, s2_scan = Signal(), Signal(), Signal()
        g0 = data.View(lay.gemm_layout, s0_raw)
        g1 = data.View(lay.gemm_layout, s1_raw)
        a2 = data.View(lay.alu_layout, s2_raw)
        k = Signal(lay.uop_width)
        adv = Signal()
        m.d.comb += adv.eq(~s2_valid | fifo.w_rdy)

        # LOAD UOPs with data that entered S0 and are not done loading.
        pending = Signal(range(cfg.cmd_queue_depth + 8))
        hdr = data.View(lay.mem_layout, self.cmd.payload)
        is_uop_load = (hdr.opcode == Opcode.LOAD) & (hdr.memory_type == MemType.UOP) & \
            (hdr.x_size != 0) & (hdr.y_size != 0)

        # --- S0: micro-op reads ------------------------------------------------------------------
        can_scan = pending == 0
        reading = s0_valid & s0_scan & can_scan & adv
        # (truncated like the lanes' loop generators, so an out-of-range uop_end wraps there
        # and here alike instead of scanning forever)
        last_idx = Signal(lay.uop_width)
        m.d.comb += last_idx.eq(g0.uop_end - 1)
        s0_last = k == last_idx
        s0_leave = s0_valid & adv & (~s0_scan | (can_scan & s0_last))
        m.d.comb += [self.uop_rd.addr.eq(k), self.uop_rd.en.eq(reading)]
        with m.If(reading):
            m.d.sync += k.eq(k + 1)
        m.d.comb += self.cmd.ready.eq(~s0_valid | s0_leave)
        accept = self.cmd.valid & self.cmd.ready
        with m.If(accept):
            op = hdr.opcode
            gh = data.View(lay.gemm_layout, self.cmd.payload)
            nonempty = ((op == Opcode.GEMM) | (op == Opcode.ALU)) & \
                (gh.uop_end > gh.uop_bgn) & (gh.iter_out != 0) & (gh.iter_in != 0)
            m.d.sync += [s0_valid.eq(1), s0_raw.eq(self.cmd.payload), s0_scan.eq(nonempty),
                         k.eq(gh.uop_bgn)]
        with m.Elif(s0_leave):
            m.d.sync += s0_valid.eq(0)
        inc = accept & is_uop_load
        with m.If(inc & ~self.uop_load_done):
            m.d.sync += pending.eq(pending + 1)
        with m.Elif(~inc & self.uop_load_done):
            m.d.sync += pending.eq(pending - 1)

        # --- min/max over the micro-ops read (data one cycle after the read) -------------------
        t_valid, t_first = Signal(), Signal()
        with m.If(adv):
            m.d.sync += [t_valid.eq(reading), t_first.eq(k == g0.uop_bgn)]
        uop = data.View(lay.uop_layout, self.uop_rd.data)
        mins = [Signal(aw, name="min_dst"), Signal(sw, name="min_src")]
        maxs = [Signal(aw, name="max_dst"), Signal(sw, name="max_src")]
        cur_min = [Signal(aw, name="cur_min_dst"), Signal(sw, name="cur_min_src")]
        cur_max = [Signal(aw, name="cur_max_dst"), Signal(sw, name="cur_max_src")]
        for mn, mx, cmn, cmx, v in zip(mins, maxs, cur_min, cur_max,
                                       (uop.dst_idx, uop.src_idx)):
            m.d.comb += [cmn.eq(Mux(t_first | (v < mn), v, mn)),
                         cmx.eq(Mux(t_first | (v > mx), v, mx))]
            with m.If(adv & t_valid):
                m.d.sync += [mn.eq(cmn), mx.eq(cmx)]

        # --- S1: final min/max and products -------------------------------------------------------
        iw = 14 + max(aw, sw)
        prods = [Signal(iw, name=n) for n in ("p_dst_out", "p_dst_in", "p_src_out", "p_src_in")]
        lo = [Signal(aw, name="lo_dst"), Signal(sw, name="lo_src")]
        hi_base = [Signal(aw, name="hi_base_dst"), Signal(sw, name="hi_base_src")]
        with m.If(adv):
            m.d.sync += [s1_valid.eq(s0_leave), s1_raw.eq(s0_raw), s1_scan.eq(s0_scan),
                         s2_valid.eq(s1_valid), s2_raw.eq(s1_raw), s2_scan.eq(s1_scan)]
            m.d.sync += [
                prods[0].eq((g1.iter_out - 1) * g1.dst_factor_out),
                prods[1].eq((g1.iter_in - 1) * g1.dst_factor_in),
                prods[2].eq((g1.iter_out - 1) * g1.src_factor_out),
                prods[3].eq((g1.iter_in - 1) * g1.src_factor_in),
                *[l.eq(c) for l, c in zip(lo, cur_min)],
                *[h.eq(c) for h, c in zip(hi_base, cur_max)],
            ]

        # --- S2: bank set ---------------------------------------------------------------------
        hw_ = iw + 2
        hi_dst = Signal(hw_)
        hi_src = Signal(hw_)
        m.d.comb += [hi_dst.eq(hi_base[0] + prods[0] + prods[1]),
                     hi_src.eq(hi_base[1] + prods[2] + prods[3])]

        def banks_of(l, h):
            return (Mux((l < half) | (h >= depth), 1, 0)) | (Mux(h >= half, 2, 0))

        b_dst = banks_of(lo[0], hi_dst)
        b_src = banks_of(lo[1], hi_src)
        uses_src = (a2.opcode == Opcode.ALU) & ~a2.use_imm
        banks = Signal(2)
        m.d.comb += banks.eq(Mux(s2_scan, b_dst | Mux(uses_src, b_src, 0), 0))
        m.d.comb += [fifo.w_en.eq(s2_valid & fifo.w_rdy),
                     fifo.w_data.eq(Cat(s2_raw, banks))]
        m.d.comb += [self.busy.eq(s0_valid | s1_valid | s2_valid),
                     # (S0 waiting for a LOAD UOP to finish is not progress: the load may
                     # itself wait on a token that never comes, and the core must see the hang)
                     self.moving.eq(adv & (s1_valid | s2_valid
                                           | (s0_valid & (~s0_scan | can_scan))))]
        return m
