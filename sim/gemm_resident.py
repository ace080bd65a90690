"""The "everything on chip" GEMM schedule of :func:`sim.programs.gemm_program`.

When the whole input matrix fits in the INP buffer and the whole weight matrix in the WGT
buffer, nothing is loaded twice and no buffer has to be freed for a later load, so the general
tiled plan (double-buffered chunks, compute->load tokens) carries costs this case does not
need. The schedule:

* **Top block.** The first ``rows[0]`` rows are cut into two half-width tiles, one per ACC
  bank (one per compute lane), and their GEMMs stream the reduction one BLOCK_IN column at a
  time, alternating between the two tiles (column ``c`` of tile 0, then of tile 1). The first
  GEMM waits only for one input column and half a weight column, and only tile 0's reset is
  exposed (tile 1's runs beside tile 0's first GEMM); each input column feeds both tiles, so
  the loads keep pace. The weights stay resident (K-major) for the rest.
* **Full tiles.** The remaining rows are cut into full-width tiles whose inputs load in one
  contiguous burst each and whose GEMMs cover the whole reduction, in row pieces of at most
  ``gemm_max`` cycles (a compute->store push waits for the GEMM in flight). They
  alternate between the banks starting with bank 1, so the top tiles' ALU epilogues (bank 0
  first) run beside the first full tiles' GEMMs. Each bank holds the top tile, two regions
  for full tiles and a copy of the bias (the two copies are adjacent: one LOAD writes both).
* **Lane A work** (resets, bias ADDs, the ALU epilogues) is cut into short instructions and
  list-scheduled against the GEMM lane (:func:`_schedule`): the compute module dispatches in
  order and an instruction waits while the other lane works on its bank, so each piece goes
  where the GEMM lane is on the other bank. The full tiles' resets and bias ADDs mostly run
  beside the top block's GEMMs.
* Every tile is stored as it finishes (in row parts, so a part's store overlaps the next
  part's passes); a full-width tile is one contiguous run.

:func:`plan_rows` cuts the rows and :data:`DEFAULTS` holds the other parameters, both
picked by measuring candidates on the RTL (``docs/hardware.md``); ``gemm_program`` builds this
schedule and the tiled plan and keeps whichever the timing model finds faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hw.isa import AluOp, MemType, Uop
from .gemm_plan import kernel_table, split_even as _split

__all__ = ["DoesNotFit", "DEFAULTS", "build", "fits", "plan_rows"]


class DoesNotFit(ValueError):
    """The GEMM does not fit the resident schedule's buffer layout."""

#: Regions per bank for the full tiles (beside the top tile).
_REGIONS = 2


@dataclass(frozen=True)
class ResidentLayout:
    """ACC placement: per bank, the top tile's base and the full tiles' region bases."""
    top: tuple             # per bank
    regions: tuple         # per bank: tuple of bases
    region_size: int       # elements per full-tile region
    top_size: int          # elements of the top tile's area
    bias_base: tuple       # per bank (None without bias)


def layout(cfg, nb: int, bias: bool, top_elems: int) -> ResidentLayout | None:
    """The ACC layout for top tiles of ``top_elems`` elements, or None if it does not fit."""
    half = cfg.acc_depth // 2
    nbias = nb if bias else 0
    size = (half - nbias - top_elems) // _REGIONS
    if size < nb or top_elems < 1:
        return None
    # Bank 0: top tile, regions, bias copy at the top; bank 1: bias copy at the bottom, top
    # tile, regions.
    b0 = 0
    b1 = half + nbias
    regions = (tuple(b0 + top_elems + i * size for i in range(_REGIONS)),
               tuple(b1 + top_elems + i * size for i in range(_REGIONS)))
    return ResidentLayout((b0, b1), regions, size, top_elems,
                          (half - nbias, half) if bias else (None, None))


def fits(cfg, mb: int, nb: int, kb: int, bias: bool, threads: int) -> bool:
    """Whether the resident schedule applies: two threads, at least two rows and two output
    blocks, A and W fit whole, and the ACC holds the smallest layout."""
    if threads != 2 or mb < 2 or nb < 2:
        return False
    return (mb * kb <= cfg.inp_depth and nb * kb <= cfg.wgt_depth
            and layout(cfg, nb, bias, nb - nb // 2) is not None)


@dataclass
class _Tile:
    m0: int
    rows: int
    n0: int
    nc: int
    bank: int
    base: int
    top: bool
    reuses: int | None = None    # index of the tile whose region this one takes over


@dataclass
class _Task:
    lane: str                    # "G" or "A"
    entries: list                # [(kind, kwargs, flags)], the first is the lane's instruction
    bank: int
    dur: int
    deps: list = field(default_factory=list)
    group: int | None = None     # load group a GEMM waits for
    end: int = 0
    deadline: int = 1 << 40      # lane A: the GEMM position by which it must be placed


def plan_rows(mb: int) -> list[int]:
    """Tile rows: a top block of half the rows, then full tiles of about 7/16, 6/16 and 3/16
    of the rest (shrinking, so the last tile's epilogue and store, which nothing hides, are
    short). For 128 rows: ``[64, 28, 24, 12]``, the best plan the RTL measured."""
    top = max(1, mb // 2)
    rest = mb - top
    out = [top]
    for share in (7, 6):
        r = min(rest - sum(out[1:]), -(-rest * share // 16))
        if r > 0:
            out.append(r)
    if sum(out) < mb:
        out.append(mb - sum(out))
    return out


#: Schedule parameters (the keyword arguments of :func:`build`) picked by measuring
#: candidates on the RTL for 128 x 128 x 128 (see ``docs/hardware.md``).
DEFAULTS = dict(top=2, chunk=112, gemm_max=384, pair_from=8, stagger=2, interleave=False,
                last_parts=1)


def build(cfg, body, uops_out: list, *, mb, nb, kb, rows, a_elem, w_elem, bias_elem,
          out_elem, post_ops, has_bias, top: int = 4, chunk: int = 112, last_parts: int = 2,
          pair_from: int = 2, gemm_max: int = 512, interleave: bool = True,
          stagger: int = 0, top_rows: int = 1):
    """Emit the schedule into ``body`` (a ProgramBuilder sharing the DRAM image) and append
    its micro-ops to ``uops_out``. ``rows``: the top block's rows, then the full tiles' rows.
    ``top``: column tiles of the top block (even, alternating banks). ``chunk``: the longest
    lane A instruction in cycles (longer work is cut into row parts). ``last_parts``: row
    parts of the last tile's epilogue. Returns the tiles as ``[((m0, rows), (n0, cols))]``."""
    t0 = rows[0]
    # The top block: a grid of row parts x column parts (an even number of columns parts,
    # so consecutive tiles alternate between the banks).
    csplit = max(2, min(top - top % 2, nb - nb % 2))
    rsplit = max(1, min(top_rows, t0))
    cols, rparts = _split(nb, csplit), _split(t0, rsplit)
    top = csplit * rsplit
    per_bank = -(-top // 2) * rparts[0][1] * cols[0][1]
    lay = layout(cfg, nb, has_bias, per_bank)
    if lay is None or any(r * nb > lay.region_size for r in rows[1:]) or sum(rows) != mb:
        raise DoesNotFit(f"the resident schedule's tiles (rows {rows}) do not fit the ACC "
                         f"buffer ({cfg.acc_depth} elements)")
    tiles, fill = [], [0, 0]
    for r0, rn in rparts:
        for n0, nc in cols:
            bank = len(tiles) % 2
            tiles.append(_Tile(r0, rn, n0, nc, bank, lay.top[bank] + fill[bank], True))
            fill[bank] += rn * nc
    used = [0, 0]
    last_in = {}
    m0 = t0
    for i, r in enumerate(rows[1:]):
        # Staggered: the last top tile is on bank 1, so the first full tile goes to bank 0;
        # else the top tiles finish together and bank 1 comes first (bank 0's epilogues run).
        bank = i % 2 if stagger else (i + 1) % 2
        reg = used[bank] % _REGIONS
        used[bank] += 1
        t = _Tile(m0, r, 0, nb, bank, lay.regions[bank][reg], False,
                  reuses=last_in.get((bank, reg)))
        last_in[(bank, reg)] = len(tiles)
        tiles.append(t)
        m0 += r
    ntiles = len(tiles)
    reused = {t.reuses for t in tiles if t.reuses is not None}
    kernel = kernel_table(uops_out)

    # --- loads: groups, each ending with a load->compute token ----------------------------
    # Weights K-major (column c of block j at c * nb + j); the top block's input columns
    # K-major (c * t0 + r); the full tiles' inputs row-major, one burst each. Column 0's
    # weights load per top tile (the first GEMM waits only for its own blocks), the later
    # columns' in one LOAD each.
    load_groups = []     # [(mem, sram, dram, y, x, stride)]
    col_group = {}       # (tile, step) -> group its GEMM pops
    # Reduction steps of the top block: single columns first (short waits), then pairs.
    steps, c = [], 0
    while c < kb:
        n = 1 if c < pair_from else min(2, kb - c)
        steps.append((c, n))
        c += n
    for si, (c0, n) in enumerate(steps):
        grp = []
        for c in range(c0, c0 + n):
            a_col = (MemType.INP, c * t0, a_elem + c, t0, 1, kb)
            if c == 0:
                # Column 0's weights per column part: the first GEMM waits only for its own.
                for ci, (n0, nc) in enumerate(cols):
                    col_group[(ci, 0)] = len(load_groups)
                    load_groups.append(([a_col] if ci == 0 else []) +
                                       [(MemType.WGT, n0, w_elem + n0 * kb, nc, 1, kb)])
            else:
                grp += [a_col, (MemType.WGT, c * nb, w_elem + c, nb, 1, kb)]
        if grp:
            col_group[(0, si)] = len(load_groups)
            load_groups.append(grp)
    inp_off = {}
    off = kb * t0
    for i in range(top, ntiles):
        t = tiles[i]
        inp_off[i] = off
        col_group[(i, 0)] = len(load_groups)
        load_groups.append([(MemType.INP, off, a_elem + t.m0 * kb, 1, t.rows * kb,
                             t.rows * kb)])
        off += t.rows * kb

    # --- GEMM lane: the top block column by column, then the full tiles -------------------
    g_tasks = []
    first_g, last_g = {}, {}

    def add_g(i, kw, group):
        t = tiles[i]
        n = (kw["uops"][1] - kw["uops"][0]) * kw["iter_out"] * kw["iter_in"]
        task = _Task("G", [("gemm", kw, dict(pop_prev_dep=group is not None))], t.bank,
                     n + 2, group=group)
        first_g.setdefault(i, task)
        last_g[i] = task
        g_tasks.append(task)

    # Column-major over the top tiles, except the last ``stagger`` steps, which go tile by
    # tile: the top tiles then finish one after the other and each one's epilogue runs beside
    # the next one's last GEMMs (on the other bank).
    lead = max(0, len(steps) - stagger)
    order_g = [(si, i) for si in range(lead) for i in range(top)]
    order_g += [(si, i) for i in range(top) for si in range(lead, len(steps))]
    for si, i in order_g:
        c0, n = steps[si]
        t = tiles[i]
        # One micro-op per reduction column of the step; the loops run over the rows
        # (outer) and the tile's output blocks (inner: next accumulator, next weight).
        k = kernel(("gs", t.base, c0, n, t.m0, t.n0), lambda t=t, c0=c0, n=n: [
            Uop(t.base, (c0 + q) * t0 + t.m0, (c0 + q) * nb + t.n0) for q in range(n)])
        add_g(i, dict(uops=k, iter_out=t.rows, iter_in=t.nc, dst=(t.nc, 1),
                      src=(1, 0), wgt=(0, 1)), col_group.get((i, si)))
    # Full tiles: each GEMM in row pieces of at most ``gemm_max`` cycles (a deferred
    # compute->store push waits for the GEMM in flight, so long GEMMs would hold the stores
    # back); two consecutive tiles (one per bank) take turns piece by piece, so the ALU lane
    # always has the other bank's epilogue work beside the GEMM lane.
    per = max(1, gemm_max // (nb * kb))
    pieces = {i: _split(tiles[i].rows, -(-tiles[i].rows // per)) for i in range(top, ntiles)}
    seq = []
    for p0 in range(top, ntiles, 2):
        pair = [i for i in (p0, p0 + 1) if i < ntiles]
        if not interleave:
            seq += [(i, r) for i in pair for r in pieces[i]]
            continue
        k = 0
        while any(k < len(pieces[i]) for i in pair):
            seq += [(i, pieces[i][k]) for i in pair if k < len(pieces[i])]
            k += 1
    for i, (r0, rn) in seq:
        t, io = tiles[i], inp_off[i]
        k = kernel(("gt", t.base + r0 * nb, io + r0 * kb), lambda t=t, io=io, r0=r0: [
            Uop(t.base + r0 * nb + j, io + r0 * kb, j) for j in range(nb)])
        add_g(i, dict(uops=k, iter_out=rn, iter_in=kb, dst=(nb if rn > 1 else 0, 0),
                      src=(kb if rn > 1 else 0, 1), wgt=(0, nb)),
              col_group[(i, 0)] if r0 == 0 else None)

    # --- ALU lane: resets, bias ADDs, epilogues (with their stores), in short pieces ------
    a_tasks = []

    def parts(t, per_elem):
        per = max(1, chunk // max(1, t.nc * per_elem))
        n = -(-t.rows // per)
        return _split(t.rows, n)

    def add_a(i, kw, kind="alu", flags=None, deps=()):
        t = tiles[i]
        n = (kw["uops"][1] - kw["uops"][0]) * kw["iter_out"] * kw["iter_in"]
        if kind == "alu" and kw.get("imm") is None:
            n *= 2        # a tensor operand: two ACC reads per element
        task = _Task("A", [(kind, kw, dict(flags or {}))], t.bank, n + 4, list(deps))
        a_tasks.append(task)
        return task

    reuse_waits = []     # (task, tile): the task waits for that tile's last store

    def epilogue_last_ref(i):
        return ("wait-store", i)

    def reset_tasks(i, deps):
        t, out = tiles[i], []
        for r0, rn in parts(t, 1):
            pb = t.base + r0 * t.nc
            k = kernel(("piece", pb), lambda pb=pb: [Uop(pb, 0, 0)])
            # The first piece of a reused region waits for the previous tile's store.
            flags = dict(pop_next_dep=(r0 == 0 and t.reuses is not None))
            waits = [d for d in deps if isinstance(d, tuple)]
            out.append(add_a(i, dict(uops=k, iter_out=rn, iter_in=t.nc, dst=(t.nc, 1),
                                     reset=True), "gemm", flags,
                             [d for d in deps if not isinstance(d, tuple)]))
            reuse_waits.extend((out[-1], w[1]) for w in waits)
            deps = [out[-1]]
        return out

    def bias_tasks(i, deps, rng=None):
        t, out = tiles[i], []
        for r0, rn in (rng or parts(t, 2)):
            pb, src = t.base + r0 * t.nc, lay.bias_base[t.bank] + t.n0
            k = kernel(("alu", pb, src), lambda pb=pb, src=src: [Uop(pb, src, 0)])
            out.append(add_a(i, dict(op=AluOp.ADD, uops=k, iter_out=rn, iter_in=t.nc,
                                     dst=(t.nc, 1), src=(0, 1)), deps=deps))
            deps = [out[-1]]
        return out

    # Prologues: resets (tile 0's goes first, on its own) and, for full tiles, the bias ADD;
    # a reused region's reset follows the store of its previous tile. A top tile adds its
    # bias in pieces while its GEMMs run (the sum does not depend on the order), wherever
    # the GEMM lane is on the other bank.
    head = reset_tasks(0, [])
    prologue_last = {0: head[-1]}
    mid_last = {}
    for i in range(1, ntiles):
        t = tiles[i]
        deps = [prologue_last[i - 1]]
        if t.reuses is not None:
            deps.append(epilogue_last_ref(t.reuses))
        last = reset_tasks(i, deps)[-1]
        if has_bias and not t.top:
            last = bias_tasks(i, [last])[-1]
        prologue_last[i] = last
    for i in range(top):
        if has_bias:
            mid_last[i] = bias_tasks(i, [prologue_last[i]])[-1]
    for i in range(ntiles):
        first_g[i].deps.append(prologue_last[i])

    # Epilogues: the passes and the store, per row part. The full tiles' come in tile order
    # (their stores free regions in that order), the last tile's last of all.
    epilogue_last = {}
    for i in range(ntiles):
        t = tiles[i]
        deps = [last_g[i]] + ([mid_last[i]] if i in mid_last else [])
        if i > top:
            deps.append(epilogue_last[i - 1])
        if i == ntiles - 1:
            deps += [epilogue_last[j] for j in range(ntiles - 1)]
        q = max(last_parts if i == ntiles - 1 else 1, len(parts(t, 1)))
        task = None
        for r0, rn in _split(t.rows, min(q, t.rows)):
            pb = t.base + r0 * t.nc
            piece = []
            # Immediate passes do not read src: they share the reset's micro-op.
            k = kernel(("piece", pb), lambda pb=pb: [Uop(pb, 0, 0)])
            for op, imm in post_ops:
                piece.append(add_a(i, dict(op=op, uops=k, iter_out=rn, iter_in=t.nc,
                                           dst=(t.nc, 1), imm=imm), deps=deps))
                deps = piece[-1:]
            if not piece:      # no ALU work: a token-only instruction carries the push
                piece.append(_Task("A", [("sync", None, {})], t.bank, 0, deps))
                a_tasks.append(piece[-1])
                deps = piece[-1:]
            task = piece[-1]
            task.entries[0][2]["push_next_dep"] = True     # compute -> store: part final
            task.entries.append(("store", (i, r0, rn), {}))
        epilogue_last[i] = task
    for waiter, i in reuse_waits:
        waiter.deps.append(epilogue_last[i])

    # Lane A deadlines (in GEMM-lane positions): a prologue must be placed before its tile's
    # first GEMM; a top tile's bias pieces by its last GEMM; an epilogue before the reset of
    # the tile that takes over its region, else anywhere (the stores, in tile order).
    gpos = {id(task): n for n, task in enumerate(g_tasks)}
    stop = {id(y) for y in head}
    for i in range(ntiles):
        for task in _chain(prologue_last[i], stop):
            task.deadline = min(task.deadline, gpos[id(first_g[i])] - 1)
    for i, last in mid_last.items():
        for task in _chain(last, {id(x) for x in _chain(prologue_last[i], stop)}):
            task.deadline = min(task.deadline, gpos[id(last_g[i])])
    reuser = {t.reuses: j for j, t in enumerate(tiles) if t.reuses is not None}
    for i in range(ntiles):
        when = gpos[id(first_g[reuser[i]])] - 2 if i in reuser else len(g_tasks) + i
        for task in _chain(epilogue_last[i], stop):
            task.deadline = min(task.deadline, when)

    order = _schedule(g_tasks, [x for x in a_tasks if x not in head], head)

    # --- emission ---------------------------------------------------------------------------
    # The first load group waits for the micro-op LOAD (compute -> load token) and, with a
    # bias, the second for the bias LOAD: both are on the critical path, the load module's
    # run-ahead is not. Later groups run ahead of the GEMMs that pop them within the token
    # queue's depth.
    lookahead = max(1, min(6, cfg.dep_queue_depth - 2))
    gate_bias = has_bias and len(load_groups) > 1
    state = dict(emitted=0, popped=0)

    def emit_loads(upto):
        while state["emitted"] < len(load_groups) and state["emitted"] <= upto:
            e = state["emitted"]
            grp = load_groups[e]
            for j, (mem, sram, dram, y, x, stride) in enumerate(grp):
                gate = j == 0 and (e == 0 or (gate_bias and e == 1))
                body.load(mem, sram, dram, y, x, stride, pop_next_dep=gate,
                          push_next_dep=(j == len(grp) - 1))
            state["emitted"] += 1

    emit_loads(0 if gate_bias else lookahead - 1)
    for task in head:
        _emit(body, task.entries, tiles, nb, out_elem, reused, ntiles)
    if has_bias:
        # Both banks' copies in one LOAD (two rows from the same DRAM row); it waits for idle
        # lanes, so it comes after tile 0's reset, which overlaps the first loads.
        body.load(MemType.ACC, lay.bias_base[0], bias_elem, 2, nb, 0, push_prev_dep=gate_bias)
        emit_loads(lookahead - 1)
    for task in order:
        if task.lane == "G":
            emit_loads(state["popped"] + lookahead - 1)
            state["popped"] += 1
        _emit(body, task.entries, tiles, nb, out_elem, reused, ntiles)
    emit_loads(len(load_groups))
    body.sync("compute", pop_next_dep=True)  # the last store has drained
    body.finish()
    return [((t.m0, t.rows), (t.n0, t.nc)) for t in tiles]


def _chain(task, stop):
    """``task`` and the lane A tasks it depends on (transitively), up to ``stop`` ids."""
    out, todo, seen = [], [task], set()
    while todo:
        x = todo.pop()
        if id(x) in seen or id(x) in stop or x.lane != "A":
            continue
        seen.add(id(x))
        out.append(x)
        todo.extend(x.deps)
    return out


def _emit(body, entries, tiles, nb, out_elem, reused, ntiles):
    for kind, kw, flags in entries:
        if kind == "gemm":
            body.gemm(**{k: v for k, v in kw.items() if not k.startswith("_")}, **flags)
        elif kind == "alu":
            body.alu(**kw, **flags)
        elif kind == "sync":
            body.sync("compute", **flags)
        else:  # store
            i, r0, rn = kw
            t = tiles[i]
            last_part = r0 + rn == t.rows
            dram = out_elem + (t.m0 + r0) * nb + t.n0
            y, x = (1, rn * nb) if t.nc == nb else (rn, t.nc)   # full width: one run
            body.store(t.base + r0 * t.nc, dram, y, x, nb if y > 1 else x, pop_prev_dep=True,
                       push_prev_dep=last_part and (i in reused or i == ntiles - 1))


def _schedule(g_tasks, a_tasks, head):
    """Place the lane A tasks between the GEMM lane's instructions (whose order is fixed).

    The compute module dispatches in order and an instruction waits while the other lane
    works on its bank, so the tasks emitted after GEMM ``i`` should be on the other bank and
    finish before GEMM ``i`` does (the "window" of GEMM ``i``): then GEMM ``i + 1`` dispatches
    in time. Windows are filled by deadline (earliest first) with the tasks whose
    dependencies are placed; a task due in this window goes even if it does not fit (the GEMM
    lane waits). Times are estimates in cycles of work (DMA waits only lengthen windows)."""
    gpos = {id(g): n for n, g in enumerate(g_tasks)}
    placed, order, pending = {id(x) for x in head}, [], list(a_tasks)
    a_free = g_end = 0
    for x in head:       # emitted before the first GEMM (with the bias LOAD after them)
        x.end = a_free = a_free + x.dur
    bank_a_end = [a_free, 0]

    def deps_ok(task, i):
        return all((id(d) in placed) if d.lane == "A" else gpos[id(d)] <= i
                   for d in task.deps)

    bank_g_end = [0, 0]

    def start(task):
        # Lane A free, dependencies done, and the GEMM lane off its bank.
        return max([a_free, bank_g_end[task.bank]] + [d.end for d in task.deps])

    for i, g in enumerate(g_tasks):
        gs = max([g_end, bank_a_end[g.bank]] + [d.end for d in g.deps if d.lane == "A"])
        g.end = g_end = bank_g_end[g.bank] = gs + g.dur
        placed.add(id(g))
        order.append(g)
        last = i == len(g_tasks) - 1
        while pending:
            ready = [x for x in pending if deps_ok(x, i)]
            if not ready:
                break
            ready.sort(key=lambda x: x.deadline)
            pick = None
            for x in ready:
                s = max(start(x), g_end if x.bank == g.bank else 0)
                if x.deadline <= i or last:
                    pick = (x, s)      # due now (or the tail): it goes regardless
                    break
                if x.bank != g.bank and s + x.dur <= g_end:
                    pick = (x, s)
                    break
            if pick is None:
                break
            x, s = pick
            pending.remove(x)
            x.end = a_free = s + x.dur
            bank_a_end[x.bank] = x.end
            placed.add(id(x))
            order.append(x)
    if pending:
        raise RuntimeError("resident GEMM schedule: lane A tasks left unplaced")
    return order

