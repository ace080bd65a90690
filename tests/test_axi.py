"""AxiMaster against a Python AXI4 slave in the Amaranth simulator, with random stalls on
every channel, random read interleaving across IDs and random DMA requests."""

import random

import pytest
from amaranth.sim import Simulator

from pyvta.hw.axi import AxiMaster, BOUNDARY_BYTES


def _word(addr, nbytes):
    # Deterministic memory contents: each byte is a hash of its address.
    return int.from_bytes(bytes(((a * 2654435761) >> 13) & 0xFF
                                for a in range(addr, addr + nbytes)), "little")


def run_axi(seed, data_width=64, n_read=3, max_burst=16, n_req=6, stall=0.3, bad_addr=None,
            background=None, ar_log=None, rand_req=None):
    rng = random.Random(seed)
    nbytes = data_width // 8
    extra = {} if background is None else dict(background=background, background_age=24,
                                                background_inflight=max_burst)
    dut = AxiMaster(data_width, n_read, max_burst=max_burst, read_fifo_depth=max(32, max_burst),
                    **extra)
    bus = dut.bus
    written = {}
    errors = []
    reads = {i: [] for i in range(n_read)}
    got = {i: [] for i in range(n_read)}
    dones = []

    def check_burst(addr, length, kind):
        if addr % nbytes:
            errors.append(f"{kind} address {addr:#x} unaligned")
        if length > max_burst:
            errors.append(f"{kind} burst of {length} beats > {max_burst}")
        if addr // BOUNDARY_BYTES != (addr + length * nbytes - 1) // BOUNDARY_BYTES:
            errors.append(f"{kind} burst at {addr:#x} x{length} crosses 4 KiB")

    def default_req():
        beats = rng.choice([1, 2, 3, 17, 40, rng.randrange(1, 200)])
        addr = rng.randrange(0, 1 << 16) * nbytes + rng.choice([0, BOUNDARY_BYTES - 3 * nbytes])
        return addr, beats

    rand_req = rand_req or default_req
    ar_queue = {i: [] for i in range(n_read)}
    aw_queue = []

    async def ar_slave(ctx):
        while True:
            rdy = rng.random() > stall
            ctx.set(bus.arready, rdy)
            _, _, valid, addr, ln, rid = await ctx.tick().sample(
                bus.arvalid, bus.araddr, bus.arlen, bus.arid)
            if valid and rdy:
                check_burst(addr, ln + 1, "read")
                ar_queue[rid].append([addr, ln + 1])
                if ar_log is not None:
                    ar_log.append(rid)

    async def r_slave(ctx):
        cur = None
        while True:
            if cur is None:
                ids = [i for i in ar_queue if ar_queue[i]]
                if ids and rng.random() > stall:
                    cur = rng.choice(ids)  # interleave bursts of different IDs
            if cur is not None:
                addr, left = ar_queue[cur][0]
                bad = bad_addr is not None and addr == bad_addr
                ctx.set(bus.rvalid, 1)
                ctx.set(bus.rid, cur)
                ctx.set(bus.rdata, _word(addr, nbytes))
                ctx.set(bus.rresp, 2 if bad else 0)
                ctx.set(bus.rlast, left == 1)
            else:
                ctx.set(bus.rvalid, 0)
            _, _, ready = await ctx.tick().sample(bus.rready)
            if cur is not None and ready:
                ar_queue[cur][0] = [addr + nbytes, left - 1]
                if left == 1:
                    ar_queue[cur].pop(0)
                cur = None  # maybe switch ID on the next beat

    async def aw_slave(ctx):
        while True:
            rdy = rng.random() > stall
            ctx.set(bus.awready, rdy)
            _, _, valid, addr, ln = await ctx.tick().sample(bus.awvalid, bus.awaddr, bus.awlen)
            if valid and rdy:
                check_burst(addr, ln + 1, "write")
                aw_queue.append([addr, ln + 1, ln + 1])

    b_pending = []

    async def w_slave(ctx):
        while True:
            rdy = rng.random() > stall and bool(aw_queue)
            ctx.set(bus.wready, rdy)
            _, _, valid, wdata, wlast = await ctx.tick().sample(bus.wvalid, bus.wdata, bus.wlast)
            if valid and rdy:
                burst = aw_queue[0]
                for k in range(nbytes):
                    written[burst[0] + k] = (wdata >> (8 * k)) & 0xFF
                burst[0] += nbytes
                burst[1] -= 1
                if bool(wlast) != (burst[1] == 0):
                    errors.append("WLAST misplaced")
                if burst[1] == 0:
                    aw_queue.pop(0)
                    b_pending.append(1)

    async def b_slave(ctx):
        while True:
            v = bool(b_pending) and rng.random() > stall
            ctx.set(bus.bvalid, v)
            ctx.set(bus.bresp, 0)
            _, _, ready = await ctx.tick().sample(bus.bready)
            if v and ready:
                b_pending.pop(0)

    def reader(i):
        port = dut.read_ports[i]

        async def req_proc(ctx):
            for _ in range(n_req):
                addr, beats = rand_req()
                reads[i].append((addr, beats))
                ctx.set(port.req.valid, 1)
                ctx.set(port.req.payload, {"addr": addr, "beats": beats})
                while True:
                    _, _, rdy = await ctx.tick().sample(port.req.ready)
                    if rdy:
                        break
                ctx.set(port.req.valid, 0)
                for _ in range(rng.randrange(3)):
                    await ctx.tick()

        async def data_proc(ctx):
            while True:
                rdy = rng.random() > stall
                ctx.set(port.data.ready, rdy)
                _, _, valid, payload = await ctx.tick().sample(port.data.valid,
                                                               port.data.payload)
                if valid and rdy:
                    got[i].append(payload)
        return req_proc, data_proc

    expect_w = {}

    async def writer(ctx):
        port = dut.write
        for _ in range(n_req):
            addr, beats = rand_req()
            addr += 1 << 20
            ctx.set(port.req.valid, 1)
            ctx.set(port.req.payload, {"addr": addr, "beats": beats})
            while True:
                _, _, rdy = await ctx.tick().sample(port.req.ready)
                if rdy:
                    break
            ctx.set(port.req.valid, 0)
            for b in range(beats):
                value = rng.getrandbits(data_width)
                for k in range(nbytes):
                    expect_w[addr + b * nbytes + k] = (value >> (8 * k)) & 0xFF
                ctx.set(port.data.valid, 1)
                ctx.set(port.data.payload, value)
                while True:
                    _, _, rdy = await ctx.tick().sample(port.data.ready)
                    if rdy:
                        break
                ctx.set(port.data.valid, 0)
                if rng.random() < stall:
                    await ctx.tick()

    async def done_proc(ctx):
        while True:
            rdy = rng.random() > stall
            ctx.set(dut.write.done.ready, rdy)
            _, _, valid, payload = await ctx.tick().sample(dut.write.done.valid,
                                                           dut.write.done.payload)
            if valid and rdy:
                dones.append(payload)

    async def main(ctx):
        for _ in range(20000):
            await ctx.tick()
            complete = all(len(got[i]) == sum(b for _, b in reads[i]) and len(reads[i]) == n_req
                           for i in range(n_read))
            if complete and len(dones) == n_req:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for proc in (ar_slave, r_slave, aw_slave, w_slave, b_slave, done_proc, writer):
        sim.add_process(proc)
    for i in range(n_read):
        for proc in reader(i):
            sim.add_process(proc)
    sim.add_testbench(main)
    sim.run()
    assert not errors, errors[:5]
    for i in range(n_read):
        expect = [_word(a + b * nbytes, nbytes) for a, beats in reads[i] for b in range(beats)]
        assert got[i] == expect, f"port {i} data mismatch (seed {seed})"
    assert len(dones) == n_req, f"{len(dones)} of {n_req} write requests done (seed {seed})"
    assert written == expect_w, f"write data mismatch (seed {seed})"
    return dones


@pytest.mark.parametrize("seed", [1, 2])
def test_axi_master_random_64(seed):
    run_axi(seed)


def test_axi_master_128_long_bursts():
    run_axi(7, data_width=128, n_read=2, max_burst=64, stall=0.2)


def test_axi_master_no_stalls():
    run_axi(3, stall=0.0)


def test_axi_master_bad_parameters():
    with pytest.raises(ValueError, match="max_burst"):
        AxiMaster(64, 3, max_burst=300)
    with pytest.raises(ValueError, match="read_fifo_depth"):
        AxiMaster(64, 3, max_burst=32, read_fifo_depth=16)
    with pytest.raises(ValueError, match="data_width"):
        AxiMaster(48, 3)


@pytest.mark.parametrize("seed", [4, 5])
def test_axi_master_background_port_random(seed):
    """A background (fetch) port changes only the order of grants, never the data."""
    run_axi(seed, background=0)


def test_axi_master_background_port_yields_but_is_not_starved():
    """Both ports ask at once: the other port's bursts go first; the background port still
    gets every burst it asked for (the data checks of ``run_axi``)."""
    logs = {}
    for bg in (None, 0):
        logs[bg] = []
        run_axi(6, n_read=2, n_req=3, stall=0.0, background=bg, ar_log=logs[bg],
                rand_req=lambda: (0, 160))
    assert logs[None][:2] == [0, 1]      # round-robin: port 0 first
    assert logs[0][:2] == [1, 1]         # background: port 1 twice before port 0
    assert logs[0].count(0) == logs[None].count(0) == 30


def test_axi_master_bad_background():
    with pytest.raises(ValueError, match="background must be a read port index"):
        AxiMaster(64, 3, background=3)
    with pytest.raises(ValueError, match="background_inflight"):
        AxiMaster(64, 3, background=0, background_inflight=8)
