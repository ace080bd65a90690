"""Static checks of the two-lane scheduling rule (``docs/scheduling.md``) on a program.

The compute module's two lanes (GEMM lane G; ALU + reset lane A) only overlap instructions
whose ACC bank sets are disjoint. :func:`bank_sets` computes every GEMM/ALU instruction's bank
set exactly as the hardware's scanner does (from its micro-ops and loop factors);
:func:`check_lanes` verifies what the lowering promises:

* **bank rule**: every GEMM/ALU instruction touches exactly one ACC bank;
* **order rule**: within an operator, where the GEMMs of one tile (bank ``b``) end and the next
  tile's (bank ``b'``) begin, the next tile's reset / re-initialisation (a lane-A instruction
  on ``b'``) comes before the finished tile's first epilogue instruction (lane A on ``b``), and
  that epilogue instruction comes before the next tile's first GEMM.
"""

from __future__ import annotations

import numpy as np

from ...hw.isa import MemType, Opcode, decode_program, decode_uops

__all__ = ["bank_sets", "check_lanes", "LaneRuleError"]


class LaneRuleError(AssertionError):
    """A program breaks the bank or order rule (names the instruction index)."""


def _uop_fields(prog_segments, insn, cfg):
    seg = dict(prog_segments)
    off = insn.dram_base * cfg.uop_elem_bytes
    base = max(o for o in seg if o <= off)
    blob = seg[base][off - base:off - base + cfg.uop_elem_bytes * insn.x_size]
    return decode_uops(blob, cfg)


def bank_sets(cfg, insns, segments) -> list[int]:
    """Per instruction: its ACC bank-set mask (bit ``b`` = bank ``b``; both bits when an
    address is out of range), 0 for instructions that occupy no lane. ``segments`` are the
    program's constant segments (where its LOAD UOPs read micro-ops, region base 0)."""
    half = cfg.acc_depth // 2
    dst = np.zeros(cfg.uop_depth, np.int64)
    src = np.zeros(cfg.uop_depth, np.int64)
    out = []
    for insn in insns:
        mask = 0
        op = insn.opcode
        if op is Opcode.LOAD and insn.memory_type is MemType.UOP and insn.x_size \
                and insn.y_size:
            uops = _uop_fields(segments, insn, cfg)
            sl = slice(insn.sram_base, insn.sram_base + len(uops))
            dst[sl] = [u.dst_idx for u in uops]
            src[sl] = [u.src_idx for u in uops]
        elif op in (Opcode.GEMM, Opcode.ALU) and insn.uop_end > insn.uop_bgn \
                and insn.iter_out and insn.iter_in:
            idx = [dst]
            if op is Opcode.ALU and not insn.use_imm:
                idx.append(src)
            for arr in idx:
                fo = insn.dst_factor_out if arr is dst else insn.src_factor_out
                fi = insn.dst_factor_in if arr is dst else insn.src_factor_in
                k = arr[insn.uop_bgn:insn.uop_end]
                lo, hi = int(k.min()), int(k.max()) + (insn.iter_out - 1) * fo + \
                    (insn.iter_in - 1) * fi
                if hi >= cfg.acc_depth or lo < 0:
                    mask |= 3
                else:
                    for b in range(lo // half, hi // half + 1):
                        mask |= 1 << b
        out.append(mask)
    return out


def _lane(insn) -> str | None:
    if insn.opcode is Opcode.GEMM:
        return "A" if insn.reset_reg else "G"
    if insn.opcode is Opcode.ALU:
        return "A"
    return None


def check_lanes(cfg, prog) -> dict:
    """Check the bank and order rules on an :class:`AccelProgram`; raises
    :class:`LaneRuleError`. Returns counts: ``{"tiles": .., "transitions": .., "per_op":
    {operator: transitions}}`` (a transition: one tile's GEMMs followed by the next's)."""
    insns = decode_program(prog.insns, cfg)
    masks = bank_sets(cfg, insns, prog.segments)
    for i, (insn, m) in enumerate(zip(insns, masks)):
        if _lane(insn) and m not in (0, 1, 2):
            raise LaneRuleError(f"instruction {i} ({insn.opcode.name}) touches both ACC "
                                f"banks (mask {m})")
    tiles = transitions = 0
    per_op = {}
    bounds = [b for _, b, _ in prog.node_ranges] + [len(insns)]
    for name, lo, hi in zip([r[0] for r in prog.node_ranges], bounds[:-1], bounds[1:]):
        runs = []  # (bank, first index, last index) of consecutive lane-G GEMMs
        for i in range(lo, hi):
            if _lane(insns[i]) == "G" and masks[i]:
                bank = masks[i] >> 1
                if runs and runs[-1][0] == bank:
                    runs[-1][2] = i
                else:
                    runs.append([bank, i, i])
        tiles += len(runs)
        per_op[name] = max(0, len(runs) - 1)
        for (b, _, end), (b2, start, _) in zip(runs[:-1], runs[1:]):
            transitions += 1
            a_lane = [i for i in range(end + 1, hi) if _lane(insns[i]) == "A" and masks[i]]
            epi = next((i for i in a_lane if masks[i] >> 1 == b), None)
            if epi is None or epi > start:
                raise LaneRuleError(f"the epilogue of the tile ending at instruction {end} "
                                    f"does not start before the next tile's first GEMM "
                                    f"({start})")
            if not any(masks[i] >> 1 == b2 for i in a_lane if i < epi):
                raise LaneRuleError(f"no reset of the tile starting at instruction {start} "
                                    f"before the epilogue at instruction {epi}")
    return {"tiles": tiles, "transitions": transitions, "per_op": per_op}
