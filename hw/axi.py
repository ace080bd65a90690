"""AXI4 master serving the accelerator's DMA ports (contract: ``hw/dma.py``).

:class:`AxiMaster` turns requests on ``n_read`` DMA read ports and one DMA write port into AXI4
INCR bursts on one memory bus.

Design choices, and why:

* **Bursts** are at most ``max_burst`` beats (16 by default: Zynq-7000 HP/ACP ports speak AXI3,
  whose bursts stop at 16 beats; AXI4 allows up to 256) and never cross a 4 KiB boundary.
* **Reads** carry the port index as ARID, so the interconnect may interleave ports but returns
  each port's beats in order (AXI's same-ID ordering rule). Every port owns a receive FIFO of
  ``read_fifo_depth`` beats, and a burst is only issued when the FIFO has room reserved for all
  of it (credits). Read data is therefore always accepted (RREADY stays high) and a client that
  stops consuming its data can never block another port's data behind it: the fetch module can
  read ahead while the load module waits, without deadlock. Several bursts per port stay
  outstanding, which hides DRAM latency up to ``read_fifo_depth`` beats.
* **Writes** come from one port. AW is issued per burst; W beats follow in the same order; the
  port's ``done`` is sent after the B response of the request's last burst and carries 1 if any
  burst of the request got SLVERR/DECERR.
* **Errors**: ``read_error`` / ``write_error`` pulse for each erroneous R beat / B response so
  the register file can keep sticky flags.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .dma import ReadPortSignature, WritePortSignature

__all__ = ["Axi4Signature", "AxiMaster", "AXI_BURST_INCR", "BOUNDARY_BYTES"]

#: AxBURST encoding of incrementing bursts.
AXI_BURST_INCR = 0b01
#: AXI bursts must not cross this many bytes.
BOUNDARY_BYTES = 4096
#: AxCACHE: normal, non-cacheable, bufferable, modifiable (what Xilinx HP ports expect).
AXI_CACHE_DEFAULT = 0b0011


class Axi4Signature(wiring.Signature):
    """An AXI4 memory bus, from the master's side (flat Xilinx-style member names)."""

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 1):
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}id": Out(id_width), f"{ch}addr": Out(addr_width), f"{ch}len": Out(8),
                f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}lock": Out(1),
                f"{ch}cache": Out(4), f"{ch}prot": Out(3), f"{ch}qos": Out(4),
                f"{ch}valid": Out(1), f"{ch}ready": In(1),
            })
        members.update({
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })
        super().__init__(members)


def _min(a, b):
    return Mux(a < b, a, b)


class AxiMaster(wiring.Component):
    """AXI4 master with ``n_read`` DMA read ports and one DMA write port.

    Parameters
    ----------
    data_width : int
        AXI data width in bits (``cfg.axi_data_width``).
    n_read : int
        Number of DMA read ports (``read0`` .. ``read{n-1}``; the index is the ARID).
    max_burst : int
        Largest burst in beats, 1..256.
    read_fifo_depth : int
        Receive FIFO per read port, in beats (at least ``max_burst``).
    max_write_bursts : int
        Write bursts in flight (AW issued, B not yet received).
    background : int or None
        A read port served in the background (the instruction fetch): granted only when no
        other port is eligible, or after waiting ``background_age`` cycles, and with at most
        ``background_inflight`` beats granted but not yet received.
    background_age, background_inflight : int

    Attributes
    ----------
    bus : Axi4Signature (master side)
    read{i} : ReadPortSignature, flipped (this side serves the client)
    write : WritePortSignature, flipped
    read_error, write_error : Out(1)
        One-cycle pulses on an error response.
    """

    def __init__(self, data_width: int = 64, n_read: int = 3, *, max_burst: int = 16,
                 read_fifo_depth: int = 64, max_write_bursts: int = 8, addr_width: int = 32,
                 background: int | None = None, background_age: int = 64,
                 background_inflight: int = 32):
        try:
            self._check(data_width, n_read, max_burst, read_fifo_depth)
            if background is not None and not 0 <= background < n_read:
                raise ValueError(f"background must be a read port index in [0, {n_read}), "
                                 f"not {background!r}")
            if background is not None and not max_burst <= background_inflight <= \
                    read_fifo_depth:
                raise ValueError(f"background_inflight must be in [max_burst, "
                                 f"read_fifo_depth] = [{max_burst}, {read_fifo_depth}], not "
                                 f"{background_inflight!r}")
            if background is not None and background_age < 1:
                raise ValueError(f"background_age must be at least 1, not {background_age!r}")
        except ValueError:
            # Rejected before it could be elaborated: not an "unused elaboratable".
            self._MustUse__used = True
            raise
        self._dw = data_width
        self._n_read = n_read
        self._max_burst = max_burst
        self._fifo_depth = read_fifo_depth
        self._max_wbursts = max_write_bursts
        self._background = background
        self._bg_age = background_age
        self._bg_inflight = background_inflight
        self._id_width = max(1, (n_read - 1).bit_length())
        members = {
            "bus": Out(Axi4Signature(addr_width=addr_width, data_width=data_width,
                                     id_width=self._id_width)),
            "write": In(WritePortSignature(data_width)),
            "read_error": Out(1),
            "write_error": Out(1),
        }
        for i in range(n_read):
            members[f"read{i}"] = In(ReadPortSignature(data_width))
        super().__init__(members)

    @property
    def read_ports(self):
        return [getattr(self, f"read{i}") for i in range(self._n_read)]

    def _burst_len(self, m, addr, left, name):
        """Beats of the next burst: min(left, max_burst, beats to the 4 KiB boundary)."""
        log_bytes = (self._dw // 8).bit_length() - 1
        to_boundary = Signal(range(BOUNDARY_BYTES // (self._dw // 8) + 1), name=f"{name}_tob")
        m.d.comb += to_boundary.eq((BOUNDARY_BYTES - addr[:12]) >> log_bytes)
        length = Signal(range(self._max_burst + 1), name=f"{name}_len")
        m.d.comb += length.eq(_min(_min(left, self._max_burst), to_boundary))
        return length

    @staticmethod
    def _check(data_width, n_read, max_burst, read_fifo_depth):
        if data_width not in (32, 64, 128, 256):
            raise ValueError(f"data_width must be 32, 64, 128 or 256, not {data_width!r}")
        if not 1 <= n_read <= 16:
            raise ValueError(f"n_read must be in [1, 16], not {n_read!r}")
        if not 1 <= max_burst <= 256:
            raise ValueError(f"max_burst must be in [1, 256], not {max_burst!r}")
        if read_fifo_depth < max_burst:
            raise ValueError(f"read_fifo_depth ({read_fifo_depth}) must be at least max_burst "
                             f"({max_burst})")
        if BOUNDARY_BYTES // (data_width // 8) < max_burst:
            raise ValueError(f"a {max_burst}-beat burst of {data_width} bits exceeds 4 KiB")

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        dw, nbytes = self._dw, self._dw // 8
        log_bytes = nbytes.bit_length() - 1
        m.d.comb += [
            bus.arsize.eq(log_bytes), bus.awsize.eq(log_bytes),
            bus.arburst.eq(AXI_BURST_INCR), bus.awburst.eq(AXI_BURST_INCR),
            bus.arcache.eq(AXI_CACHE_DEFAULT), bus.awcache.eq(AXI_CACHE_DEFAULT),
            bus.wstrb.eq((1 << nbytes) - 1),
        ]
        self._elaborate_read(m, bus, nbytes)
        self._elaborate_write(m, bus, nbytes)
        return m

    # --- read side ------------------------------------------------------------------------------
    def _elaborate_read(self, m, bus, nbytes):
        n = self._n_read
        ar_valid = Signal()
        ar_addr = Signal(32)
        ar_len = Signal(8)
        ar_id = Signal(self._id_width)
        m.d.comb += [bus.arvalid.eq(ar_valid), bus.araddr.eq(ar_addr), bus.arlen.eq(ar_len),
                     bus.arid.eq(ar_id)]
        ar_free = Signal()  # the AR register can take a new burst this cycle
        m.d.comb += ar_free.eq(~ar_valid | bus.arready)
        with m.If(ar_valid & bus.arready):
            m.d.sync += ar_valid.eq(0)

        busy, addr, left, length, credit, eligible, grant = [], [], [], [], [], [], []
        for i, port in enumerate(self.read_ports):
            b = Signal(name=f"rd{i}_busy")
            a = Signal(32, name=f"rd{i}_addr")
            lf = Signal(24, name=f"rd{i}_left")
            ln = self._burst_len(m, a, lf, f"rd{i}")
            cr = Signal(range(self._fifo_depth + 1), name=f"rd{i}_credit",
                        init=self._fifo_depth)
            el = Signal(name=f"rd{i}_eligible")
            m.d.comb += el.eq(b & (cr >= ln))
            g = Signal(name=f"rd{i}_grant")
            busy.append(b), addr.append(a), left.append(lf), length.append(ln)
            credit.append(cr), eligible.append(el), grant.append(g)

            m.d.comb += port.req.ready.eq(~b)
            with m.If(port.req.valid & ~b & (port.req.payload.beats != 0)):
                m.d.sync += [b.eq(1), a.eq(port.req.payload.addr),
                             lf.eq(port.req.payload.beats)]

            fifo = SyncFIFOBuffered(width=self._dw, depth=self._fifo_depth)
            m.submodules[f"rd{i}_fifo"] = fifo
            hit = Signal(name=f"rd{i}_rhit")
            m.d.comb += [
                hit.eq(bus.rvalid & (bus.rid == i)),
                fifo.w_data.eq(bus.rdata),
                fifo.w_en.eq(hit),
                port.data.valid.eq(fifo.r_rdy),
                port.data.payload.eq(fifo.r_data),
                fifo.r_en.eq(port.data.ready),
            ]
            popped = Signal(name=f"rd{i}_popped")
            m.d.comb += popped.eq(fifo.r_rdy & port.data.ready)
            # Credits: room in the FIFO not yet promised to an issued burst.
            m.d.sync += cr.eq(cr - Mux(g, ln, 0) + popped)
            with m.If(g):
                m.d.sync += [a.eq(a + (ln << (nbytes.bit_length() - 1))), lf.eq(lf - ln)]
                with m.If(lf == ln):
                    m.d.sync += b.eq(0)

        # R is accepted whenever the addressed FIFO has room, which credits guarantee; an
        # unknown RID is accepted and dropped rather than hanging the bus.
        rready = Signal()
        m.d.comb += rready.eq(1)
        with m.Switch(bus.rid):
            for i in range(n):
                with m.Case(i):
                    m.d.comb += rready.eq(m.submodules[f"rd{i}_fifo"].w_rdy)
        m.d.comb += [bus.rready.eq(rready),
                     self.read_error.eq(bus.rvalid & rready & bus.rresp[1])]

        # Round-robin arbitration among eligible ports, starting after the last winner. A
        # background port (the instruction fetch) only wins when no other port is eligible,
        # or once it has waited ``background_age`` cycles, and keeps at most
        # ``background_inflight`` beats granted but not yet received, so the bursts it reads
        # ahead never hold a data transfer back by more than that at the memory.
        bg = self._background
        if bg is not None:
            age = Signal(range(self._bg_age + 1), name="bg_age")
            inflight = Signal(range(self._fifo_depth + 1), name="bg_inflight")
            arrived = bus.rvalid & rready & (bus.rid == bg)
            m.d.sync += inflight.eq(inflight + Mux(grant[bg], length[bg], 0) - arrived)
            bg_ok = Signal(name="bg_ok")
            m.d.comb += bg_ok.eq(eligible[bg] & (inflight + length[bg] <= self._bg_inflight))
            others = Signal(name="others_eligible")
            m.d.comb += others.eq(Cat(eligible[i] for i in range(n) if i != bg).any())
            with m.If(grant[bg] | ~bg_ok):
                m.d.sync += age.eq(0)
            with m.Elif(ar_free & (age != self._bg_age)):
                m.d.sync += age.eq(age + 1)
            bg_turn = bg_ok & (~others | (age == self._bg_age))
            with m.If(ar_free & bg_turn):
                m.d.comb += grant[bg].eq(1)
        rr_turn = ar_free if bg is None else ar_free & ~bg_turn
        last = Signal(range(n), init=n - 1)
        with m.If(rr_turn if n > (bg is not None) else 0):
            with m.Switch(last):
                for lst in range(n):
                    with m.Case(lst):
                        order = [(lst + k) % n for k in range(1, n + 1) if (lst + k) % n != bg]
                        if not order:   # the background port is the only one
                            continue
                        with m.If(eligible[order[0]]):
                            m.d.comb += grant[order[0]].eq(1)
                        for j in order[1:]:
                            with m.Elif(eligible[j]):
                                m.d.comb += grant[j].eq(1)
        for i in range(n):
            with m.If(grant[i]):
                m.d.sync += [ar_valid.eq(1), ar_addr.eq(addr[i]), ar_len.eq(length[i] - 1),
                             ar_id.eq(i), last.eq(i)]

    # --- write side -----------------------------------------------------------------------------
    def _elaborate_write(self, m, bus, nbytes):
        port = self.write
        busy = Signal(name="wr_busy")
        addr = Signal(32, name="wr_addr")
        left = Signal(24, name="wr_left")
        length = self._burst_len(m, addr, left, "wr")
        m.d.comb += port.req.ready.eq(~busy)
        with m.If(port.req.valid & ~busy & (port.req.payload.beats != 0)):
            m.d.sync += [busy.eq(1), addr.eq(port.req.payload.addr),
                         left.eq(port.req.payload.beats)]

        # Burst lengths for the W channel and "last burst of its request" flags for B.
        wlen_fifo = SyncFIFOBuffered(width=8, depth=self._max_wbursts)
        bflag_fifo = SyncFIFOBuffered(width=1, depth=self._max_wbursts)
        m.submodules.wlen_fifo = wlen_fifo
        m.submodules.bflag_fifo = bflag_fifo

        aw_valid = Signal()
        aw_addr = Signal(32)
        aw_len = Signal(8)
        m.d.comb += [bus.awvalid.eq(aw_valid), bus.awaddr.eq(aw_addr), bus.awlen.eq(aw_len),
                     bus.awid.eq(0)]
        with m.If(aw_valid & bus.awready):
            m.d.sync += aw_valid.eq(0)
        issue = Signal()
        m.d.comb += issue.eq(busy & (~aw_valid | bus.awready) & wlen_fifo.w_rdy &
                             bflag_fifo.w_rdy)
        m.d.comb += [
            wlen_fifo.w_data.eq(length - 1), wlen_fifo.w_en.eq(issue),
            bflag_fifo.w_data.eq(left == length), bflag_fifo.w_en.eq(issue),
        ]
        with m.If(issue):
            m.d.sync += [aw_valid.eq(1), aw_addr.eq(addr), aw_len.eq(length - 1),
                         addr.eq(addr + (length << (nbytes.bit_length() - 1))),
                         left.eq(left - length)]
            with m.If(left == length):
                m.d.sync += busy.eq(0)

        # W: pass the client's beats through, framing them with WLAST per burst.
        beat = Signal(8)
        wlast = Signal()
        m.d.comb += [
            wlast.eq(beat == wlen_fifo.r_data),
            bus.wdata.eq(port.data.payload),
            bus.wlast.eq(wlast),
            bus.wvalid.eq(port.data.valid & wlen_fifo.r_rdy),
            port.data.ready.eq(bus.wready & wlen_fifo.r_rdy),
        ]
        with m.If(port.data.valid & bus.wready & wlen_fifo.r_rdy):
            m.d.sync += beat.eq(Mux(wlast, 0, beat + 1))
            m.d.comb += wlen_fifo.r_en.eq(wlast)

        # B: one response per burst; the request is done after its last burst's response.
        err_acc = Signal()
        is_last = bflag_fifo.r_data[0]
        bad = bus.bresp[1]
        m.d.comb += [
            bus.bready.eq(bflag_fifo.r_rdy & (~is_last | port.done.ready)),
            port.done.valid.eq(bus.bvalid & bflag_fifo.r_rdy & is_last),
            port.done.payload.eq(err_acc | bad),
            self.write_error.eq(bus.bvalid & bus.bready & bad),
        ]
        with m.If(bus.bvalid & bus.bready):
            m.d.comb += bflag_fifo.r_en.eq(1)
            m.d.sync += err_acc.eq(Mux(is_last, 0, err_acc | bad))
