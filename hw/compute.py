"""The compute module: micro-op and ACC loads, and two execution lanes for GEMM and ALU.

Structure (see ``docs/hardware.md`` and the lanes spec)::

    cmd --> scanner (bank sets) --> dispatcher --+--> lane G (GEMM)       --+--> ACC/OUT
                                                 +--> lane A (ALU, reset) --+    banks 0, 1
                                                 +--> UOP/ACC loaders
    pending-push FIFO: tokens fire once everything dispatched up to the instruction is done

* The ACC and OUT SRAMs are split into two banks by the top bit of the ACC index
  (``bank(a) = a >> (log_acc_depth - 1)``). Each bank has one write port and one or two read
  ports (:func:`acc_read_ports_for`); each port is steered, per cycle, to the lane whose
  (registered) address selects that bank.
* Lane G (:class:`~pyvta.hw.lanes.Lane`, ``kind="gemm"``) runs GEMMs with ``reset_reg = 0``;
  lane A (``kind="alu"``) runs ALU instructions and reset GEMMs. Each is in-order, with a
  one-entry "next" register, its own micro-op buffer read port and the write-stage bypass; see
  :mod:`pyvta.hw.lanes` for the cycle-by-cycle pipeline (lane G: last write ``n + 3 + L``
  cycles after it starts issuing ``n`` micro-op slots, lane A: ``n + 3``).
* The scanner (:mod:`pyvta.hw.scanner`) computes each GEMM/ALU instruction's bank set from its
  micro-ops while the lanes execute earlier instructions (``n + 3`` cycles from entering the
  scanner to the head of its output FIFO, one instruction per ``max(n, 1)`` cycles).

Dispatch (the head of the scanner's output FIFO, at most one instruction per cycle; the
dispatched instruction is in the lane's "next" register the following cycle, and starts issuing
the cycle after that if the lane is idle, or right after the previous instruction's last slot):

* GEMM/ALU with micro-op iterations, for lane X: its pops are available, X's "next" register is
  free (or frees this cycle), its bank set is disjoint from the other lane's in-flight banks
  (the instructions in its "next" register, loop generator and pipeline, up to and including
  the write stage), and, if it pushes, the pending-push FIFO has room. After a bank conflict the
  instruction dispatches in the cycle after the other lane's last conflicting write (cycle
  ``W``): dispatch ``W + 1``, first issue ``W + 3``.
* LOAD UOP / LOAD ACC with data: both lanes empty and no load running; the load then runs as
  before (nothing else dispatches until its data is written). FINISH: both lanes empty and no
  push pending. Anything else (token-only syncs, GEMM/ALU without iterations, bad instructions)
  dispatches with its pops and occupies no lane.

Token pushes are deferred: a dispatched instruction that pushes enters the pending-push FIFO
(depth 4) with the per-lane dispatch counts at that point; the FIFO head fires (waiting for
queue room) once each lane's completion count has reached those counts, i.e. every GEMM/ALU
dispatched up to and including it has done its last write (for a LOAD: once its data is
written). The earliest a push fires is the cycle after the instruction's last write.

ACC read ports: GEMM and ALU-with-immediate micro-ops read one ACC element (dst); an ALU
micro-op with a tensor operand reads two (dst and src). With two read ports per bank every
micro-op takes one cycle. Where block RAM is short (the default configuration on an xc7z020)
the ACC has one read port per bank and a tensor-operand ALU micro-op takes two cycles (a
src-fetch slot, then the execute slot). :func:`acc_read_ports_for` picks the mode.

Hazards: within a lane, as in the single pipeline (transparent read ports plus the write-stage
bypass: any micro-op may read what the previous ones wrote, at full rate). Across lanes there
are none, because instructions in flight in different lanes touch disjoint banks.
"""

from __future__ import annotations

from amaranth import Module, Signal, Mux, Cat
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .core_errors import CoreError
from .dma import ReadPortSignature
from .isa import MemType, Opcode, insn_layout
from .lanes import Lane
from .loader import TileLoader, UopLoader, uops_per_word
from .queues import SramReadSignature, SramWriteSignature, TokenPopSignature, TokenPushSignature
from .scanner import Scanner, scan_layout

__all__ = ["ComputeModule", "acc_read_ports_for", "bram36_estimate"]

#: Entries of the pending-push FIFO (the spec asks for at least 2).
_PUSH_FIFO_DEPTH = 4

# Aspect ratios (depth, width) of a Xilinx 7-series / UltraScale BRAM36.
_BRAM36_MODES = ((32768, 1), (16384, 2), (8192, 4), (4096, 9), (2048, 18), (1024, 36),
                 (512, 72))

#: Copies of the micro-op buffer: one read port each for the scanner, lane G and lane A.
UOP_COPIES = 3


def bram36_estimate(width: int, depth: int) -> int:
    """BRAM36 blocks for one ``width`` x ``depth`` memory with one read port (best ratio)."""
    return min(-(-width // w) * -(-depth // d) for d, w in _BRAM36_MODES)


def acc_read_ports_for(cfg) -> int:
    """2 (full-rate tensor ALU, ACC banks duplicated) if every on-chip buffer (the micro-op
    buffer in :data:`UOP_COPIES` copies, the ACC and OUT in two banks each) plus a second copy
    of the ACC banks fits in 80 % of the part's BRAM36, else 1."""
    half = cfg.acc_depth // 2
    need = sum(bram36_estimate(w * 8, d) for w, d in (
        (cfg.inp_elem_bytes, cfg.inp_depth), (cfg.wgt_elem_bytes, cfg.wgt_depth)))
    need += 2 * bram36_estimate(cfg.out_elem_bytes * 8, cfg.out_depth // 2)
    upb = uops_per_word(cfg)
    need += UOP_COPIES * bram36_estimate(32 * upb, cfg.uop_depth // upb)
    need += 4 * bram36_estimate(cfg.acc_elem_bytes * 8, half)
    return 2 if need <= 0.8 * cfg.fpga_resources["bram36"] else 1


class ComputeModule(wiring.Component):
    """Executes LOAD UOP/ACC, GEMM, ALU and FINISH with two lanes (see the module docstring).

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
    out_wr0, out_wr1 : Out(SramWriteSignature)
        Write ports of the two OUT SRAM banks (index = ACC index without its top bit).
    finish : Out(1)
        Pulses when FINISH executes.
    busy, token_stall, dma_stall, alu_uop : Out(1)
        Status for the performance counters (``alu_uop`` pulses once per micro-op issued).
    gemm_uop : Out(2)
        GEMM micro-ops issued this cycle (lane G plus a reset in lane A: 0, 1 or 2).
    stuck : Out(1)
        Nothing in the module can make progress this cycle (for the core's hang detection).
    error : Out(CoreError)
        One-cycle pulses of error bits.

    Parameters
    ----------
    cfg : HwConfig
    acc_read_ports : 1, 2 or None
        ACC read ports per bank (see the module docstring); ``None``: :func:`acc_read_ports_for`.
    """

    def __init__(self, cfg, acc_read_ports: int | None = None):
        if acc_read_ports is None:
            acc_read_ports = acc_read_ports_for(cfg)
        if acc_read_ports not in (1, 2):
            raise ValueError(f"acc_read_ports must be 1 or 2, not {acc_read_ports!r}")
        self._cfg = cfg
        self._acc_ports = acc_read_ports
        self._lay = insn_layout(cfg)
        hw_ = cfg.log_acc_depth - 1
        super().__init__({
            "cmd": In(stream.Signature(128)),
            "l2c": Out(TokenPopSignature()),
            "s2c": Out(TokenPopSignature()),
            "c2l": Out(TokenPushSignature()),
            "c2s": Out(TokenPushSignature()),
            "dma": Out(ReadPortSignature(cfg.axi_data_width)),
            "inp_rd": Out(SramReadSignature(cfg.log_inp_depth, cfg.inp_elem_bytes * 8)),
            "wgt_rd": Out(SramReadSignature(cfg.log_wgt_depth, cfg.wgt_elem_bytes * 8)),
            "out_wr0": Out(SramWriteSignature(hw_, cfg.out_elem_bytes * 8)),
            "out_wr1": Out(SramWriteSignature(hw_, cfg.out_elem_bytes * 8)),
            "finish": Out(1),
            "busy": Out(1),
            "token_stall": Out(1),
            "dma_stall": Out(1),
            "gemm_uop": Out(2),
            "alu_uop": Out(1),
            "stuck": Out(1),
            "error": Out(CoreError),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, lay = self._cfg, self._lay
        lanes = cfg.batch * cfg.block_out
        acc_bits = cfg.acc_elem_bytes * 8
        aw = lay.dst_width
        dual = self._acc_ports == 2
        half = cfg.acc_depth // 2

        # --- micro-op buffer: one write port, a read port each for the scanner and the lanes ---
        # Words of ``upb`` micro-ops with one write enable each, so a LOAD UOP writes a whole
        # bus beat per cycle; a read selects its micro-op with the registered low index bits.
        upb = uops_per_word(cfg)
        lu = upb.bit_length() - 1
        m.submodules.uop_mem = uop_mem = Memory(shape=32 * upb, depth=cfg.uop_depth // upb,
                                                init=[])
        uop_wr = uop_mem.write_port(granularity=32)
        m.submodules.scanner = scan = Scanner(cfg)
        m.submodules.lane_g = lg = Lane(cfg, "gemm", self._acc_ports)
        m.submodules.lane_a = la = Lane(cfg, "alu", self._acc_ports)
        for i, client in enumerate((scan, lg, la)):
            rp = uop_mem.read_port()
            lo = Signal(lu, name=f"uop_rd_lo{i}")
            with m.If(client.uop_rd.en):
                m.d.sync += lo.eq(client.uop_rd.addr[:lu])
            m.d.comb += [rp.addr.eq(client.uop_rd.addr[lu:]), rp.en.eq(client.uop_rd.en),
                         client.uop_rd.data.eq(rp.data.word_select(lo, 32))]
        wiring.connect(m, wiring.flipped(self.cmd), scan.cmd)
        wiring.connect(m, wiring.flipped(self.inp_rd), lg.inp_rd)
        wiring.connect(m, wiring.flipped(self.wgt_rd), lg.wgt_rd)

        # --- loaders (micro-ops and ACC tiles) sharing the DMA port --------------------------
        m.submodules.uop_loader = uop_ld = UopLoader(cfg)
        m.submodules.acc_loader = acc_ld = TileLoader(cfg, (MemType.ACC,))
        head = data.View(scan_layout(), scan.out.payload)
        sel_uop = Signal()  # which loader owns the DMA port (only one runs at a time)
        m.d.comb += [
            uop_ld.insn.eq(head.insn), acc_ld.insn.eq(head.insn),
            uop_wr.addr.eq(uop_ld.wr.addr), uop_wr.data.eq(uop_ld.wr.data),
            uop_wr.en.eq(uop_ld.wr_lanes),
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

        # --- ACC banks: lanes in flight touch disjoint banks, so each bank port serves the lane
        # whose registered address selects it (lane A if its read/write is for the bank, else
        # lane G); the ACC loader writes only while both lanes are empty.
        out_wr = (self.out_wr0, self.out_wr1)
        out_data = {ln: Cat(ln.w_data.word_select(i, 32)[:8] for i in range(lanes))
                    for ln in (la, lg)}
        rd_dst = [None, None]
        rd_src = [None, None]
        for b in range(2):
            mem = Memory(shape=acc_bits, depth=half, init=[])
            m.submodules[f"acc_bank{b}"] = mem
            wp = mem.write_port()
            rd_dst[b] = rp = mem.read_port(transparent_for=(wp,))
            a_rd = la.rd_dst_en & (la.rd_dst_addr[-1] == b)
            m.d.comb += [rp.addr.eq(Mux(a_rd, la.rd_dst_addr, lg.rd_dst_addr)[:-1]), rp.en.eq(1)]
            if dual:
                rd_src[b] = rs = mem.read_port(transparent_for=(wp,))
                m.d.comb += [rs.addr.eq(la.rd_src_addr[:-1]), rs.en.eq(1)]
            a_wr = la.w_valid & (la.w_dst[-1] == b)
            g_wr = lg.w_valid & (lg.w_dst[-1] == b)
            with m.If(a_wr):
                m.d.comb += [wp.addr.eq(la.w_dst[:-1]), wp.data.eq(la.w_data), wp.en.eq(1),
                             out_wr[b].addr.eq(la.w_dst[:-1]), out_wr[b].data.eq(out_data[la]),
                             out_wr[b].en.eq(1)]
            with m.Elif(g_wr):
                m.d.comb += [wp.addr.eq(lg.w_dst[:-1]), wp.data.eq(lg.w_data), wp.en.eq(1),
                             out_wr[b].addr.eq(lg.w_dst[:-1]), out_wr[b].data.eq(out_data[lg]),
                             out_wr[b].en.eq(1)]
            with m.Else():
                m.d.comb += [wp.addr.eq(acc_ld.wr.addr[:aw - 1]), wp.data.eq(acc_ld.wr.data),
                             wp.en.eq(acc_ld.wr.en & (acc_ld.wr.addr[aw - 1] == b))]
        # Read data comes back one cycle after the address: select the bank with the
        # registered top bit of the address each lane read.
        for ln, port in ((la, "dst"), (lg, "dst"), (la, "src")):
            if port == "src" and not dual:
                continue
            sel = Signal(name=f"sel_{'a' if ln is la else 'g'}_{port}")
            addr = getattr(ln, f"rd_{port}_addr")
            m.d.sync += sel.eq(addr[-1])
            ports = rd_dst if port == "dst" else rd_src
            m.d.comb += getattr(ln, f"rd_{port}_data").eq(Mux(sel, ports[1].data, ports[0].data))

        # --- dispatch (program order, at most one instruction per cycle) -----------------------
        h = data.View(lay.mem_layout, head.insn)
        hg = data.View(lay.gemm_layout, head.insn)
        op = h.opcode
        is_loop = (op == Opcode.GEMM) | (op == Opcode.ALU)
        nonempty = (hg.uop_end > hg.uop_bgn) & (hg.iter_out != 0) & (hg.iter_in != 0)
        to_lane = is_loop & nonempty
        to_a = (op == Opcode.ALU) | hg.reset_reg
        is_load = (op == Opcode.LOAD) & ((h.memory_type == MemType.UOP)
                                         | (h.memory_type == MemType.ACC))
        sync_only = (h.x_size == 0) | (h.y_size == 0)
        load_data = is_load & ~sync_only
        is_finish = op == Opcode.FINISH
        has_pad = (h.y_pad_0 != 0) | (h.y_pad_1 != 0) | (h.x_pad_0 != 0) | (h.x_pad_1 != 0)
        has_push = h.push_prev_dep | h.push_next_dep
        pops_ok = (~h.pop_prev_dep | self.l2c.valid) & (~h.pop_next_dep | self.s2c.valid)

        loading = Signal()      # a LOAD UOP/ACC runs; nothing else dispatches meanwhile
        ld_push_prev, ld_push_next = Signal(), Signal()
        # Instructions dispatched to / completed by each lane (mod 256; at most a few dozen
        # can be in flight, so "completed - target" < 128 means the target is done).
        disp_cnt = {ln: Signal(8, name=f"disp_{n}") for ln, n in ((la, "a"), (lg, "g"))}
        done_cnt = {ln: Signal(8, name=f"done_{n}") for ln, n in ((la, "a"), (lg, "g"))}
        for ln in (la, lg):
            with m.If(ln.done):
                m.d.sync += done_cnt[ln].eq(done_cnt[ln] + 1)

        # Pending pushes: (push_prev, push_next, target count lane A, target count lane G).
        m.submodules.pushq = pushq = SyncFIFO(width=18, depth=_PUSH_FIFO_DEPTH)
        quiet = la.empty & lg.empty & loaders_idle & ~loading
        lane_ok = Mux(to_a, la.disp_ready & ((head.banks & lg.inflight_banks) == 0),
                      lg.disp_ready & ((head.banks & la.inflight_banks) == 0))
        ready = ~loading & (~has_push | pushq.w_rdy) & Mux(
            to_lane, lane_ok, Mux(load_data, quiet, Mux(is_finish, quiet & ~pushq.r_rdy, 1)))
        dispatch = Signal()
        m.d.comb += [dispatch.eq(scan.out.valid & ready & pops_ok),
                     scan.out.ready.eq(dispatch),
                     self.l2c.pop.eq(dispatch & h.pop_prev_dep),
                     self.s2c.pop.eq(dispatch & h.pop_next_dep)]
        next_a, next_g = Signal(8), Signal(8)
        m.d.comb += [next_a.eq(disp_cnt[la] + (to_lane & to_a)),
                     next_g.eq(disp_cnt[lg] + (to_lane & ~to_a))]
        with m.If(dispatch):
            m.d.sync += [disp_cnt[la].eq(next_a), disp_cnt[lg].eq(next_g)]
            with m.If(to_lane):
                m.d.comb += [la.disp_valid.eq(to_a), lg.disp_valid.eq(~to_a)]
            with m.Elif(load_data):
                m.d.sync += [loading.eq(1), sel_uop.eq(h.memory_type == MemType.UOP),
                             ld_push_prev.eq(h.push_prev_dep), ld_push_next.eq(h.push_next_dep)]
                with m.If(h.memory_type == MemType.UOP):
                    m.d.comb += uop_ld.go.eq(1)
                    with m.If(has_pad):
                        m.d.comb += self.error.eq(CoreError.BAD_PAD)
                with m.Else():
                    m.d.comb += acc_ld.go.eq(1)
            with m.Elif(is_finish):
                m.d.comb += self.finish.eq(1)
            with m.Elif(~is_loop & ~is_load):
                m.d.comb += self.error.eq(CoreError.BAD_INSN)
        for ln in (la, lg):
            m.d.comb += [ln.disp_insn.eq(head.insn), ln.disp_banks.eq(head.banks)]
        load_end = loading & loaders_idle
        with m.If(load_end):
            m.d.sync += loading.eq(0)
            m.d.comb += scan.uop_load_done.eq(sel_uop)
        with m.If(load_end):
            m.d.comb += [pushq.w_en.eq(ld_push_prev | ld_push_next),
                         pushq.w_data.eq(Cat(ld_push_prev, ld_push_next, disp_cnt[la],
                                             disp_cnt[lg]))]
        with m.Else():
            m.d.comb += [pushq.w_en.eq(dispatch & has_push & ~load_data),
                         pushq.w_data.eq(Cat(h.push_prev_dep, h.push_next_dep, next_a, next_g))]

        # --- deferred pushes: the head fires once everything up to its instruction is done --
        p_prev, p_next = pushq.r_data[0], pushq.r_data[1]
        t_a, t_g = pushq.r_data[2:10], pushq.r_data[10:18]
        d_a, d_g = Signal(8), Signal(8)
        m.d.comb += [d_a.eq(done_cnt[la] - t_a), d_g.eq(done_cnt[lg] - t_g)]
        p_done = pushq.r_rdy & ~d_a[7] & ~d_g[7]
        p_room = (~p_prev | self.c2l.ready) & (~p_next | self.c2s.ready)
        p_fire = p_done & p_room
        m.d.comb += [self.c2l.push.eq(p_fire & p_prev), self.c2s.push.eq(p_fire & p_next),
                     pushq.r_en.eq(p_fire)]

        # --- status ---------------------------------------------------------------------------
        m.d.comb += [
            self.gemm_uop.eq((lg.uop & 1) + la.uop_reset),
            self.alu_uop.eq(la.uop & ~la.uop_reset),
            self.busy.eq(self.cmd.valid | scan.busy | scan.out.valid | ~la.empty | ~lg.empty
                         | loading | pushq.r_rdy),
            self.token_stall.eq((scan.out.valid & ready & ~pops_ok) | (p_done & ~p_room)),
            self.dma_stall.eq(Mux(sel_uop, uop_ld.dma_stall, acc_ld.dma_stall) & loading),
            self.stuck.eq(~(dispatch | p_fire | ~la.empty | ~lg.empty | loading | scan.moving
                            | (self.cmd.valid & self.cmd.ready))),
        ]
        return m
