"""One execution lane of the compute module: a "next" register, a loop generator and an
in-order micro-op pipeline ending in an ACC/OUT write.

The compute module (:mod:`pyvta.hw.compute`) has two lanes built from this class:

* lane G (``kind="gemm"``): GEMM instructions with ``reset_reg = 0``; reads INP and WGT and
  runs the :class:`~pyvta.hw.gemm.GemmCore`;
* lane A (``kind="alu"``): ALU instructions and GEMM instructions with ``reset_reg = 1``
  (which write 0); no INP/WGT reads, no GEMM core, so its pipeline is ``L`` cycles shorter.

Timing of one lane (``L`` = :attr:`GemmCore.LATENCY` = 4 for lane G, 0 for lane A; cycle 0
is the first cycle the instruction is in the loop generator: an instruction dispatched in
cycle ``d`` is in the "next" register in ``d+1`` and, if the lane is idle, issues from
``d+2``)::

    cycle 0      loop generator: micro-op buffer read at index k; offsets i*f_out + j*f_in
    cycle 1      dst/src/wgt = micro-op fields + offsets
    cycle 2      (lane G) INP and WGT SRAM reads
    cycle 2+L    ACC reads of dst (and src) issued (``pre`` stage)
    cycle E=3+L  execute: acc[dst] + products (GEMM), op(acc[dst], imm | acc[src]) (ALU), 0
                 (reset), with the bypass from the write stage
    cycle E+1    write ACC[dst] and OUT[dst]; ``done`` pulses with the instruction's last write

So an instruction of ``n`` micro-op iterations (``2n`` slots for tensor ALU with one ACC read
port) issues from cycle 0 to ``n-1`` and its last write is at cycle ``n+3+L`` (lane G:
``n+3+GemmCore.LATENCY``; lane A: ``n+3``). The "next" register holds one dispatched
instruction; it moves into the loop generator in the cycle the current one issues its last
micro-op, so consecutive instructions of a lane issue back to back with no bubble.

Hazards inside a lane are as in the single-pipeline design: every ACC read is one cycle before
its use; a write in the same cycle is seen through the SRAM's transparent read port, the write
of the micro-op just ahead through the write-stage bypass. Between lanes there are no hazards:
the dispatcher only lets two instructions be in flight in different lanes when they touch
disjoint ACC/OUT banks. ``inflight_banks`` is the union of the bank sets of the instruction in
"next", the one in the loop generator and every one with a micro-op still in the pipeline
(every stage carries its instruction's bank set), so it stays set until the last write.
"""

from __future__ import annotations

from amaranth import Module, Signal, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .alu import AluLane
from .gemm import GemmCore
from .isa import AluOp, Opcode, insn_layout
from .queues import SramReadSignature

__all__ = ["Lane"]


class Lane(wiring.Component):
    """One in-order execution lane (see the module docstring).

    Ports
    -----
    disp_valid, disp_insn, disp_banks : In
        Dispatch: written into the "next" register when ``disp_ready``.
    disp_ready : Out(1)
        The "next" register is free or frees this cycle.
    uop_rd : Out(SramReadSignature)
        The lane's own micro-op buffer read port.
    inp_rd, wgt_rd : Out(SramReadSignature)
        (lane G only) INP and WGT SRAM reads.
    rd_dst_addr, rd_dst_en, rd_dst_data, rd_src_addr, rd_src_en, rd_src_data
        ACC reads (the compute module routes them to a bank); ``*_data`` one cycle later.
    w_valid, w_dst, w_data : Out
        The write stage (ACC and OUT at ``w_dst``).
    done : Out(1)
        Pulses with the last write of an instruction.
    empty : Out(1)
        Nothing in "next", the loop generator or the pipeline.
    inflight_banks : Out(2)
    uop, uop_reset : Out(1)
        A micro-op iteration issued this cycle (``uop_reset``: by a reset GEMM).
    """

    def __init__(self, cfg, kind: str, acc_read_ports: int):
        if kind not in ("gemm", "alu"):
            self._MustUse__used = True  # rejected, so never elaborated: no "unused" warning
            raise ValueError(f"kind must be 'gemm' or 'alu', not {kind!r}")
        self._cfg, self._kind, self._ports = cfg, kind, acc_read_ports
        self._lay = lay = insn_layout(cfg)
        acc_bits = cfg.acc_elem_bytes * 8
        aw = lay.dst_width
        members = {
            "disp_valid": In(1), "disp_insn": In(128), "disp_banks": In(2),
            "disp_ready": Out(1),
            "uop_rd": Out(SramReadSignature(lay.uop_width, 32)),
            "rd_dst_addr": Out(aw), "rd_dst_en": Out(1), "rd_dst_data": In(acc_bits),
            "w_valid": Out(1), "w_dst": Out(aw), "w_data": Out(acc_bits),
            "done": Out(1), "empty": Out(1), "inflight_banks": Out(2),
            "uop": Out(1), "uop_reset": Out(1),
        }
        if kind == "gemm":
            members["inp_rd"] = Out(SramReadSignature(cfg.log_inp_depth, cfg.inp_elem_bytes * 8))
            members["wgt_rd"] = Out(SramReadSignature(cfg.log_wgt_depth, cfg.wgt_elem_bytes * 8))
        elif acc_read_ports == 2:
            members.update({"rd_src_addr": Out(aw), "rd_src_en": Out(1),
                            "rd_src_data": In(acc_bits)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self._cfg, self._lay
        is_g = self._kind == "gemm"
        dual = self._ports == 2
        lanes = cfg.batch * cfg.block_out
        acc_bits = cfg.acc_elem_bytes * 8
        aw, sw, ww = lay.dst_width, lay.src_width, lay.wgt_width

        # --- the "next" register ---------------------------------------------------------------
        nx_valid = Signal()
        nx_raw = Signal(128)
        nx_banks = Signal(2)
        nx_g = data.View(lay.gemm_layout, nx_raw)
        nx_a = data.View(lay.alu_layout, nx_raw)

        # --- loop generator ------------------------------------------------------------------
        lg_active = Signal()
        lg_banks = Signal(2)
        is_alu, reset, use_imm = Signal(), Signal(), Signal()
        alu_op = Signal(AluOp)
        imm = Signal(signed(16))
        uop_bgn = Signal(lay.uop_width)
        uop_last = Signal(lay.uop_width)
        iter_out_last, iter_in_last = Signal(14), Signal(14)
        f_dst = [Signal(aw, name="f_dst_out"), Signal(aw, name="f_dst_in")]
        f_src = [Signal(sw, name="f_src_out"), Signal(sw, name="f_src_in")]
        f_wgt = [Signal(ww, name="f_wgt_out"), Signal(ww, name="f_wgt_in")]
        k = Signal(lay.uop_width)
        i_cnt, j_cnt = Signal(14), Signal(14)
        base = [Signal(aw, name="base_dst"), Signal(sw, name="base_src"),
                Signal(ww, name="base_wgt")]
        off = [Signal(aw, name="off_dst"), Signal(sw, name="off_src"), Signal(ww, name="off_wgt")]
        factors = [f_dst, f_src, f_wgt]

        last_k = k == uop_last
        last_j = j_cnt == iter_in_last
        last_i = i_cnt == iter_out_last
        # Single ACC read port: a tensor-operand ALU micro-op first issues a src-fetch slot.
        phase = Signal()
        hold = Signal()
        if not is_g and not dual:
            m.d.comb += hold.eq(is_alu & ~use_imm & ~phase)
            with m.If(lg_active & is_alu & ~use_imm):
                m.d.sync += phase.eq(~phase)
        lg_last = lg_active & last_k & last_j & last_i & ~hold
        nx_take = nx_valid & (~lg_active | lg_last)
        m.d.comb += self.disp_ready.eq(~nx_valid | nx_take)
        with m.If(self.disp_valid & self.disp_ready):
            m.d.sync += [nx_valid.eq(1), nx_raw.eq(self.disp_insn), nx_banks.eq(self.disp_banks)]
        with m.Elif(nx_take):
            m.d.sync += nx_valid.eq(0)

        m.d.comb += [self.uop_rd.addr.eq(k), self.uop_rd.en.eq(1)]
        with m.If(lg_active & ~hold):
            with m.If(~last_k):
                m.d.sync += k.eq(k + 1)
            with m.Else():
                m.d.sync += k.eq(uop_bgn)
                with m.If(~last_j):
                    m.d.sync += j_cnt.eq(j_cnt + 1)
                    m.d.sync += [o.eq(o + f[1]) for o, f in zip(off, factors)]
                with m.Else():
                    m.d.sync += j_cnt.eq(0)
                    with m.If(~last_i):
                        m.d.sync += i_cnt.eq(i_cnt + 1)
                        m.d.sync += [b.eq(b + f[0]) for b, f in zip(base, factors)]
                        m.d.sync += [o.eq(b + f[0]) for o, b, f in zip(off, base, factors)]
                    with m.Else():
                        m.d.sync += lg_active.eq(0)
        with m.If(nx_take):
            # The dispatcher only sends instructions with micro-op iterations.
            m.d.sync += [
                lg_active.eq(1), lg_banks.eq(nx_banks),
                is_alu.eq(nx_g.opcode == Opcode.ALU), reset.eq(nx_g.reset_reg),
                alu_op.eq(nx_a.alu_opcode), use_imm.eq(nx_a.use_imm), imm.eq(nx_a.imm),
                uop_bgn.eq(nx_g.uop_bgn), uop_last.eq(nx_g.uop_end - 1), k.eq(nx_g.uop_bgn),
                iter_out_last.eq(nx_g.iter_out - 1), iter_in_last.eq(nx_g.iter_in - 1),
                i_cnt.eq(0), j_cnt.eq(0), phase.eq(0),
                f_dst[0].eq(nx_g.dst_factor_out), f_dst[1].eq(nx_g.dst_factor_in),
                f_src[0].eq(nx_g.src_factor_out), f_src[1].eq(nx_g.src_factor_in),
                f_wgt[0].eq(nx_g.wgt_factor_out), f_wgt[1].eq(nx_g.wgt_factor_in),
                *[b.eq(0) for b in base], *[o.eq(0) for o in off],
            ]
        m.d.comb += [self.uop.eq(lg_active & ~hold),
                     self.uop_reset.eq(lg_active & ~hold & ~is_alu & reset)]

        # --- pipeline ---------------------------------------------------------------------------
        meta_lay = data.StructLayout({"valid": 1, "src_fetch": 1, "last": 1, "banks": 2,
                                      "is_alu": 1, "reset": 1,
                                      "alu_op": AluOp, "use_imm": 1, "imm": signed(16),
                                      "dst": aw, "src": sw, "wgt": ww})
        # cycle 1: offsets of the micro-op being read.
        s1 = Signal(meta_lay)
        m.d.sync += [s1.valid.eq(lg_active), s1.src_fetch.eq(hold), s1.last.eq(lg_last),
                     s1.banks.eq(lg_banks), s1.is_alu.eq(is_alu), s1.reset.eq(reset),
                     s1.alu_op.eq(alu_op), s1.use_imm.eq(use_imm), s1.imm.eq(imm),
                     s1.dst.eq(off[0]), s1.src.eq(off[1]), s1.wgt.eq(off[2])]
        uop = data.View(lay.uop_layout, self.uop_rd.data)
        # cycle 2: buffer indices.
        s2 = Signal(meta_lay)
        m.d.sync += [s2.eq(s1), s2.src.eq(s1.src + uop.src_idx), s2.wgt.eq(s1.wgt + uop.wgt_idx),
                     s2.dst.eq(Mux(s1.src_fetch, s1.src + uop.src_idx, s1.dst + uop.dst_idx))]
        stages = [s2]
        if is_g:
            m.d.comb += [self.inp_rd.addr.eq(s2.src), self.inp_rd.en.eq(1),
                         self.wgt_rd.addr.eq(s2.wgt), self.wgt_rd.en.eq(1)]
            m.submodules.gemm = gemm = GemmCore(cfg)
            m.d.comb += [gemm.inp.eq(self.inp_rd.data), gemm.wgt.eq(self.wgt_rd.data)]
            extra = GemmCore.LATENCY + 1
        else:
            extra = 1
        for c in range(3, 3 + extra):
            s = Signal(meta_lay, name=f"s{c}")
            m.d.sync += s.eq(stages[-1])
            stages.append(s)
        pre, ex = stages[-2], stages[-1]
        m.d.comb += [self.rd_dst_addr.eq(pre.dst), self.rd_dst_en.eq(pre.valid)]
        if not is_g and dual:
            m.d.comb += [self.rd_src_addr.eq(pre.src), self.rd_src_en.eq(pre.valid)]

        # cycle E: execute, with the bypass from the write stage (selects compared a cycle
        # early, pre against the micro-op in execute, to keep comparators off this path).
        w_data = self.w_data
        fwd_a, fwd_b = Signal(), Signal()
        writes = ex.valid & ~ex.src_fetch
        m.d.sync += fwd_a.eq(writes & (ex.dst == pre.dst))
        a_val = Mux(fwd_a, w_data, self.rd_dst_data)
        result = Signal(acc_bits)
        if is_g:
            for lane in range(lanes):
                a = a_val.word_select(lane, 32).as_signed()
                m.d.comb += result.word_select(lane, 32).eq(
                    a + gemm.sums.word_select(lane, 32).as_signed())
        else:
            if dual:
                m.d.sync += fwd_b.eq(writes & (ex.dst == pre.src[:aw]))
                b_val = Mux(fwd_b, w_data, self.rd_src_data)
            else:
                b_val = Signal(acc_bits)  # acc[src], read by the micro-op's src-fetch slot
                with m.If(ex.src_fetch):
                    m.d.sync += b_val.eq(a_val)
            for lane in range(lanes):
                alu = AluLane()
                m.submodules[f"alu{lane}"] = alu
                a = a_val.word_select(lane, 32).as_signed()
                b = Mux(ex.use_imm, ex.imm, b_val.word_select(lane, 32).as_signed())
                m.d.comb += [alu.op.eq(ex.alu_op), alu.a.eq(a), alu.b.eq(b)]
                # reset_reg writes 0, for ALU instructions too
                m.d.comb += result.word_select(lane, 32).eq(
                    Mux(ex.reset | ~ex.is_alu, 0, alu.out))
        w_last = Signal()
        w_banks = Signal(2)
        m.d.sync += [self.w_valid.eq(ex.valid & ~ex.src_fetch), self.w_dst.eq(ex.dst),
                     w_data.eq(result), w_last.eq(ex.valid & ex.last), w_banks.eq(ex.banks)]
        m.d.comb += self.done.eq(self.w_valid & w_last)

        # --- occupancy ------------------------------------------------------------------------
        busy = nx_valid | lg_active | s1.valid | self.w_valid
        banks = Mux(nx_valid, nx_banks, 0) | Mux(lg_active, lg_banks, 0) | \
            Mux(self.w_valid, w_banks, 0)
        for s in [s1] + stages:
            busy = busy | s.valid
            banks = banks | Mux(s.valid, s.banks, 0)
        m.d.comb += [self.empty.eq(~busy), self.inflight_banks.eq(banks)]
        return m
