"""The compute module: micro-op and ACC loads, the GEMM core and the tensor ALU.

Micro-op pipeline (one micro-op per cycle, no bubble between loop iterations nor between
consecutive GEMM/ALU instructions; ``L`` = :attr:`GemmCore.LATENCY`)::

    cycle 0      loop generator: micro-op buffer read at index k; offsets i*f_out + j*f_in
    cycle 1      dst/src/wgt = micro-op fields + offsets
    cycle 2      INP and WGT SRAM reads
    cycle 3..    GEMM core (L cycles); the ACC reads of dst and src are issued at cycle 2+L
    cycle E=3+L  execute: acc[dst] + products (GEMM) or op(acc[dst], imm | acc[src]) (ALU)
    cycle E+1    write ACC[dst] and OUT[dst] (low byte of every lane)

ACC read ports: GEMM and ALU-with-immediate micro-ops read one ACC element (dst); an ALU
micro-op with a tensor operand reads two (dst and src). With two ACC read ports (the SRAM is
duplicated) every micro-op takes one cycle. Where block RAM is short (the default
configuration on an xc7z020: a second ACC copy would need 29 more BRAM36 than the part has
left) the ACC has one read port, and a tensor-operand ALU micro-op takes two cycles: a first
pipeline slot reads ``acc[src]`` into a holding register (with the same bypass as any read),
the second executes. :func:`acc_read_ports_for` picks the mode from the configuration.

Hazards: every ACC read happens one cycle before its use, so the only writes it can miss are
(a) the write in the same cycle, which the SRAM's read ports see because they are transparent
for the ACC write port, and (b) the write of the micro-op immediately ahead, which is bypassed
from the write-stage register. So any micro-op may read or write the ACC element the previous
ones wrote, at full rate, with the sequential semantics of the functional simulator: no
VTA-style "dst must differ from the last two micro-ops" rule.

LOADs into the UOP/ACC buffers and FINISH start only once the pipeline is empty; every
instruction that pushes a token drains the pipeline before pushing, so a token is only sent once
the results it announces are in SRAM. Token-only instructions that just pop do not wait.
"""

from __future__ import annotations

from amaranth import Module, Signal, Mux, Cat, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .alu import AluLane
from .core_errors import CoreError
from .dma import ReadPortSignature
from .gemm import GemmCore
from .isa import AluOp, MemType, Opcode, insn_layout
from .loader import TileLoader, UopLoader
from .queues import SramReadSignature, SramWriteSignature, TokenPopSignature, TokenPushSignature

__all__ = ["ComputeModule", "acc_read_ports_for", "bram36_estimate"]

# Aspect ratios (depth, width) of a Xilinx 7-series / UltraScale BRAM36.
_BRAM36_MODES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36),
                 (512, 72))


def bram36_estimate(width: int, depth: int) -> int:
    """BRAM36 blocks for one ``width`` x ``depth`` memory with one read port (best ratio)."""
    return min(-(-width // w) * -(-depth // d) for d, w in _BRAM36_MODES)


def acc_read_ports_for(cfg) -> int:
    """2 (full-rate tensor ALU, ACC SRAM duplicated) if every on-chip buffer plus a second
    ACC copy fits in 80 % of the part's BRAM36, else 1."""
    need = sum(bram36_estimate(w * 8, d) for w, d in (
        (cfg.inp_elem_bytes, cfg.inp_depth), (cfg.wgt_elem_bytes, cfg.wgt_depth),
        (cfg.out_elem_bytes, cfg.out_depth), (4, cfg.uop_depth),
        (cfg.acc_elem_bytes, cfg.acc_depth), (cfg.acc_elem_bytes, cfg.acc_depth)))
    return 2 if need <= 0.8 * cfg.fpga_resources["bram36"] else 1


class ComputeModule(wiring.Component):
    """Executes LOAD UOP/ACC, GEMM, ALU and FINISH.

    Ports
    -----
    cmd : In(stream.Signature(128))
    l2c, s2c : Out(TokenPopSignature)
        load->compute (``pop_prev_dep``) and store->compute (``pop_next_dep``) tokens.
    c2l, c2s : Out(TokenPushSignature)
        compute->load (``push_prev_dep``) and compute->store (``push_next_dep``) tokens.
    dma : Out(ReadPortSignature)
        Micro-op and ACC loads.
    inp_rd, wgt_rd : Out(SramReadSignature)
        Read ports of the INP and WGT SRAMs (written by the load module).
    out_wr : Out(SramWriteSignature)
        Write port of the OUT SRAM (read by the store module).
    finish : Out(1)
        Pulses when FINISH executes.
    busy, token_stall, dma_stall, gemm_uop, alu_uop : Out(1)
        Status for the performance counters (``*_uop`` pulse once per micro-op issued).
    error : Out(CoreError)
        One-cycle pulses of error bits.

    Parameters
    ----------
    cfg : HwConfig
    acc_read_ports : 1, 2 or None
        ACC SRAM read ports (see the module docstring); ``None``: :func:`acc_read_ports_for`.
    """

    def __init__(self, cfg, acc_read_ports: int | None = None):
        if acc_read_ports is None:
            acc_read_ports = acc_read_ports_for(cfg)
        if acc_read_ports not in (1, 2):
            raise ValueError(f"acc_read_ports must be 1 or 2, not {acc_read_ports!r}")
        self._cfg = cfg
        self._acc_ports = acc_read_ports
        self._lay = insn_layout(cfg)
        super().__init__({
            "cmd": In(stream.Signature(128)),
            "l2c": Out(TokenPopSignature()),
            "s2c": Out(TokenPopSignature()),
            "c2l": Out(TokenPushSignature()),
            "c2s": Out(TokenPushSignature()),
            "dma": Out(ReadPortSignature(cfg.axi_data_width)),
            "inp_rd": Out(SramReadSignature(cfg.log_inp_depth, cfg.inp_elem_bytes * 8)),
            "wgt_rd": Out(SramReadSignature(cfg.log_wgt_depth, cfg.wgt_elem_bytes * 8)),
            "out_wr": Out(SramWriteSignature(cfg.log_acc_depth, cfg.out_elem_bytes * 8)),
            "finish": Out(1),
            "busy": Out(1),
            "token_stall": Out(1),
            "dma_stall": Out(1),
            "gemm_uop": Out(1),
            "alu_uop": Out(1),
            "error": Out(CoreError),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self._cfg, self._lay
        lanes = cfg.batch * cfg.block_out
        acc_bits = cfg.acc_elem_bytes * 8
        aw, sw, ww = lay.dst_width, lay.src_width, lay.wgt_width

        # --- SRAMs private to compute -------------------------------------------------------
        m.submodules.uop_mem = uop_mem = Memory(shape=32, depth=cfg.uop_depth, init=[])
        m.submodules.acc_mem = acc_mem = Memory(shape=acc_bits, depth=cfg.acc_depth, init=[])
        uop_wr = uop_mem.write_port()
        uop_rd = uop_mem.read_port()
        acc_wr = acc_mem.write_port()
        acc_rd_dst = acc_mem.read_port(transparent_for=(acc_wr,))
        dual = self._acc_ports == 2
        if dual:
            acc_rd_src = acc_mem.read_port(transparent_for=(acc_wr,))

        # --- loaders (micro-ops and ACC tiles) sharing the DMA port --------------------------
        m.submodules.uop_loader = uop_ld = UopLoader(cfg)
        m.submodules.acc_loader = acc_ld = TileLoader(cfg, (MemType.ACC,))
        sel_uop = Signal()  # which loader owns the DMA port (only one runs at a time)
        m.d.comb += [
            uop_ld.insn.eq(self.cmd.payload), acc_ld.insn.eq(self.cmd.payload),
            uop_wr.addr.eq(uop_ld.wr.addr), uop_wr.data.eq(uop_ld.wr.data),
            uop_wr.en.eq(uop_ld.wr.en),
        ]
        with m.If(sel_uop):
            m.d.comb += [
                self.dma.req.valid.eq(uop_ld.dma.req.valid),
                self.dma.req.payload.eq(uop_ld.dma.req.payload),
                uop_ld.dma.req.ready.eq(self.dma.req.ready),
                uop_ld.dma.data.valid.eq(self.dma.data.valid),
                uop_ld.dma.data.payload.eq(self.dma.data.payload),
                self.dma.data.ready.eq(uop_ld.dma.data.ready),
            ]
        with m.Else():
            m.d.comb += [
                self.dma.req.valid.eq(acc_ld.dma.req.valid),
                self.dma.req.payload.eq(acc_ld.dma.req.payload),
                acc_ld.dma.req.ready.eq(self.dma.req.ready),
                acc_ld.dma.data.valid.eq(self.dma.data.valid),
                acc_ld.dma.data.payload.eq(self.dma.data.payload),
                self.dma.data.ready.eq(acc_ld.dma.data.ready),
            ]
        loaders_idle = uop_ld.idle & acc_ld.idle

        # --- the next GEMM/ALU instruction, handed from the controller to the loop --------------
        nx_valid = Signal()
        nx_raw = Signal(128)
        nx_g = data.View(lay.gemm_layout, nx_raw)
        nx_a = data.View(lay.alu_layout, nx_raw)

        # --- loop generator ---------------------------------------------------------------------
        lg_active = Signal()
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
        hold = Signal()  # this cycle issues the src-fetch slot (never with two ports)
        if not dual:
            m.d.comb += hold.eq(is_alu & ~use_imm & ~phase)
            with m.If(lg_active & is_alu & ~use_imm):
                m.d.sync += phase.eq(~phase)
        lg_last = lg_active & last_k & last_j & last_i & ~hold
        nx_take = nx_valid & (~lg_active | lg_last)

        m.d.comb += [uop_rd.addr.eq(k), uop_rd.en.eq(1)]
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
            nonempty = (nx_g.uop_end > nx_g.uop_bgn) & (nx_g.iter_out != 0) & \
                (nx_g.iter_in != 0)
            m.d.sync += [
                lg_active.eq(nonempty),
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
        m.d.comb += [self.gemm_uop.eq(lg_active & ~is_alu),
                     self.alu_uop.eq(lg_active & is_alu & ~hold)]

        # --- pipeline ---------------------------------------------------------------------------
        # src_fetch marks the first slot of a two-slot tensor ALU micro-op (one read port).
        meta_lay = data.StructLayout({"valid": 1, "src_fetch": 1, "is_alu": 1, "reset": 1,
                                      "alu_op": AluOp, "use_imm": 1, "imm": signed(16),
                                      "dst": aw, "src": sw, "wgt": ww})

        # cycle 1: offsets of the micro-op being read.
        s1 = Signal(meta_lay)
        m.d.sync += [s1.valid.eq(lg_active), s1.src_fetch.eq(hold),
                     s1.is_alu.eq(is_alu), s1.reset.eq(reset),
                     s1.alu_op.eq(alu_op), s1.use_imm.eq(use_imm), s1.imm.eq(imm),
                     s1.dst.eq(off[0]), s1.src.eq(off[1]), s1.wgt.eq(off[2])]
        uop = data.View(lay.uop_layout, uop_rd.data)
        # cycle 2: buffer indices.
        s2 = Signal(meta_lay)
        m.d.sync += [s2.eq(s1), s2.src.eq(s1.src + uop.src_idx), s2.wgt.eq(s1.wgt + uop.wgt_idx),
                     s2.dst.eq(Mux(s1.src_fetch, s1.src + uop.src_idx, s1.dst + uop.dst_idx))]
        m.d.comb += [self.inp_rd.addr.eq(s2.src), self.inp_rd.en.eq(1),
                     self.wgt_rd.addr.eq(s2.wgt), self.wgt_rd.en.eq(1)]
        m.submodules.gemm = gemm = GemmCore(cfg)
        m.d.comb += [gemm.inp.eq(self.inp_rd.data), gemm.wgt.eq(self.wgt_rd.data)]
        # cycles 3 .. E: metadata delayed alongside the GEMM core.
        stages = [s2]
        for c in range(3, 3 + GemmCore.LATENCY + 1):
            s = Signal(meta_lay, name=f"s{c}")
            m.d.sync += s.eq(stages[-1])
            stages.append(s)
        pre, ex = stages[-2], stages[-1]
        m.d.comb += [acc_rd_dst.addr.eq(pre.dst), acc_rd_dst.en.eq(1)]
        if dual:
            m.d.comb += [acc_rd_src.addr.eq(pre.src), acc_rd_src.en.eq(1)]

        # cycle E: execute, with the bypass from the write stage.
        w_valid = Signal()
        w_dst = Signal(aw)
        w_data = Signal(acc_bits)
        # Bypass selects are compared one cycle early (pre against the micro-op in execute,
        # which is the one in the write stage next cycle) to keep comparators off the
        # execute stage's path.
        fwd_a, fwd_b = Signal(), Signal()
        writes = ex.valid & ~ex.src_fetch
        m.d.sync += [fwd_a.eq(writes & (ex.dst == pre.dst)),
                     fwd_b.eq(writes & (ex.dst == pre.src[:aw]))]
        a_val = Mux(fwd_a, w_data, acc_rd_dst.data)
        if dual:
            b_val = Mux(fwd_b, w_data, acc_rd_src.data)
        else:
            b_val = Signal(acc_bits)  # acc[src], read by the micro-op's src-fetch slot
            with m.If(ex.src_fetch):
                m.d.sync += b_val.eq(a_val)
        result = Signal(acc_bits)
        for lane in range(lanes):
            alu = AluLane()
            m.submodules[f"alu{lane}"] = alu
            a = a_val.word_select(lane, 32).as_signed()
            b = Mux(ex.use_imm, ex.imm, b_val.word_select(lane, 32).as_signed())
            m.d.comb += [alu.op.eq(ex.alu_op), alu.a.eq(a), alu.b.eq(b)]
            gemm_res = a + gemm.sums.word_select(lane, 32).as_signed()
            m.d.comb += result.word_select(lane, 32).eq(
                Mux(ex.reset, 0, Mux(ex.is_alu, alu.out, gemm_res)))
        m.d.sync += [w_valid.eq(ex.valid & ~ex.src_fetch), w_dst.eq(ex.dst), w_data.eq(result)]

        # cycle E+1: write ACC and OUT (OUT holds the low byte of every lane).
        m.d.comb += [
            self.out_wr.addr.eq(w_dst), self.out_wr.en.eq(w_valid),
            self.out_wr.data.eq(Cat(w_data.word_select(lane, 32)[:8] for lane in range(lanes))),
        ]
        with m.If(w_valid):
            m.d.comb += [acc_wr.addr.eq(w_dst), acc_wr.data.eq(w_data), acc_wr.en.eq(1)]
        with m.Else():
            m.d.comb += [acc_wr.addr.eq(acc_ld.wr.addr), acc_wr.data.eq(acc_ld.wr.data),
                         acc_wr.en.eq(acc_ld.wr.en)]
        pipe_busy = s1.valid | w_valid
        for s in stages:
            pipe_busy = pipe_busy | s.valid
        quiet = ~nx_valid & ~lg_active & ~pipe_busy & loaders_idle

        # --- controller ---------------------------------------------------------------------------
        hdr = data.View(lay.mem_layout, self.cmd.payload)
        op = hdr.opcode
        is_loop = (op == Opcode.GEMM) | (op == Opcode.ALU)
        is_load = (op == Opcode.LOAD) & ((hdr.memory_type == MemType.UOP)
                                         | (hdr.memory_type == MemType.ACC))
        pops_ok = (~hdr.pop_prev_dep | self.l2c.valid) & (~hdr.pop_next_dep | self.s2c.valid)
        push_prev, push_next = Signal(), Signal()
        has_pad = (hdr.y_pad_0 != 0) | (hdr.y_pad_1 != 0) | (hdr.x_pad_0 != 0) | \
            (hdr.x_pad_1 != 0)
        sync_only = (hdr.x_size == 0) | (hdr.y_size == 0)

        with m.If(nx_take):
            m.d.sync += nx_valid.eq(0)

        with m.FSM(name="compute_fsm") as fsm:
            with m.State("DECODE"):
                with m.If(self.cmd.valid):
                    # Only data movement into ACC/UOP and FINISH wait for an empty pipeline;
                    # token-only instructions just pop (and drain before pushing).
                    needs_quiet = (is_load & ~sync_only) | (op == Opcode.FINISH)
                    room = Mux(is_loop, ~nx_valid | nx_take, ~needs_quiet | quiet)
                    with m.If(room & pops_ok):
                        m.d.comb += [self.cmd.ready.eq(1),
                                     self.l2c.pop.eq(hdr.pop_prev_dep),
                                     self.s2c.pop.eq(hdr.pop_next_dep)]
                        m.d.sync += [push_prev.eq(hdr.push_prev_dep),
                                     push_next.eq(hdr.push_next_dep)]
                        has_push = hdr.push_prev_dep | hdr.push_next_dep
                        with m.If(is_loop):
                            m.d.sync += [nx_valid.eq(1), nx_raw.eq(self.cmd.payload)]
                            with m.If(has_push):
                                m.next = "DRAIN"
                        with m.Elif(is_load):
                            with m.If(sync_only):
                                with m.If(has_push):
                                    m.next = "DRAIN"
                            with m.Else():
                                m.d.sync += sel_uop.eq(hdr.memory_type == MemType.UOP)
                                with m.If(hdr.memory_type == MemType.UOP):
                                    m.d.comb += uop_ld.go.eq(1)
                                    with m.If(has_pad):
                                        m.d.comb += self.error.eq(CoreError.BAD_PAD)
                                with m.Else():
                                    m.d.comb += acc_ld.go.eq(1)
                                m.next = "LOAD"
                        with m.Elif(op == Opcode.FINISH):
                            m.d.comb += self.finish.eq(1)
                            with m.If(has_push):
                                m.next = "PUSH"
                        with m.Else():
                            m.d.comb += self.error.eq(CoreError.BAD_INSN)
                            with m.If(has_push):
                                m.next = "DRAIN"
                    with m.Elif(room):
                        m.d.comb += self.token_stall.eq(1)
            with m.State("LOAD"):
                with m.If(loaders_idle):
                    m.next = "PUSH"
            with m.State("DRAIN"):
                with m.If(quiet):
                    m.next = "PUSH"
            with m.State("PUSH"):
                with m.If((~push_prev | self.c2l.ready) & (~push_next | self.c2s.ready)):
                    m.d.comb += [self.c2l.push.eq(push_prev), self.c2s.push.eq(push_next)]
                    m.next = "DECODE"
                with m.Else():
                    m.d.comb += self.token_stall.eq(1)

        m.d.comb += [
            self.busy.eq(~fsm.ongoing("DECODE") | self.cmd.valid | ~quiet),
            self.dma_stall.eq(Mux(sel_uop, uop_ld.dma_stall, acc_ld.dma_stall)
                              & fsm.ongoing("LOAD")),
        ]
        return m
