"""ISA encode/decode: round trips, bit-exactness against vta-isa.md, range checks, bad input."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyvta.hw.config import load_config
from pyvta.hw.isa import (INSN_BYTES, AluInsn, AluOp, FinishInsn, GemmInsn, IsaError, MemInsn,
                          MemType, Opcode, Uop, decode, decode_program, decode_uops, encode,
                          encode_program, encode_uops, format_insn, insn_layout)

PRESETS = ["pynq-z1", "tiny", "zcu104"]
CFGS = {p: load_config(p) for p in PRESETS}

# ------------------------------------------------------------------------------------------------
# The default-configuration bit table of docs/vta-isa.md, typed here by hand: (name, lo, hi).
# ------------------------------------------------------------------------------------------------
HEADER = [("opcode", 0, 2), ("pop_prev_dep", 3, 3), ("pop_next_dep", 4, 4),
          ("push_prev_dep", 5, 5), ("push_next_dep", 6, 6)]
MEM_BITS = HEADER + [
    ("memory_type", 7, 9), ("sram_base", 10, 25), ("dram_base", 26, 57),
    ("y_size", 64, 79), ("x_size", 80, 95), ("x_stride", 96, 111),
    ("y_pad_0", 112, 115), ("y_pad_1", 116, 119), ("x_pad_0", 120, 123), ("x_pad_1", 124, 127)]
LOOP_BITS = HEADER + [
    ("reset_reg", 7, 7), ("uop_bgn", 8, 20), ("uop_end", 21, 34), ("iter_out", 35, 48),
    ("iter_in", 49, 62), ("dst_factor_out", 64, 74), ("dst_factor_in", 75, 85),
    ("src_factor_out", 86, 96), ("src_factor_in", 97, 107)]
GEMM_BITS = LOOP_BITS + [("wgt_factor_out", 108, 117), ("wgt_factor_in", 118, 127)]
ALU_BITS = LOOP_BITS + [("alu_opcode", 108, 110), ("use_imm", 111, 111), ("imm", 112, 127)]
UOP_BITS = [("dst_idx", 0, 10), ("src_idx", 11, 21), ("wgt_idx", 22, 31)]


def _expected_word(insn, table) -> bytes:
    word = 0
    for name, lo, hi in table:
        value = getattr(insn, name)
        value = value.value if hasattr(value, "value") else int(value)
        width = hi - lo + 1
        word |= (value & ((1 << width) - 1)) << lo
    return word.to_bytes(16, "little")


# ------------------------------------------------------------------------------------------------
# Strategies built from each configuration's field widths
# ------------------------------------------------------------------------------------------------

def _field_strategy(name, width):
    if name == "imm":
        return st.integers(-(1 << (width - 1)), (1 << (width - 1)) - 1)
    if width == 1:
        return st.booleans()
    return st.integers(0, (1 << width) - 1)


def _insn_strategy(cfg, cls, opcode, **fixed):
    table = insn_layout(cfg).table(opcode)
    kwargs = {}
    for name, (off, width) in table.items():
        if name == "opcode":
            continue
        if name == "memory_type":
            kwargs[name] = st.sampled_from(list(MemType))
        elif name == "alu_opcode":
            kwargs[name] = st.sampled_from(list(AluOp))
        else:
            kwargs[name] = _field_strategy(name, width)
    kwargs.update(fixed)
    return st.builds(cls, opcode=st.just(opcode), **kwargs)


def _any_insn(cfg):
    return st.one_of(
        _insn_strategy(cfg, MemInsn, Opcode.LOAD),
        _insn_strategy(cfg, MemInsn, Opcode.STORE),
        _insn_strategy(cfg, GemmInsn, Opcode.GEMM),
        _insn_strategy(cfg, AluInsn, Opcode.ALU),
        _insn_strategy(cfg, FinishInsn, Opcode.FINISH))


@pytest.mark.parametrize("preset", PRESETS)
def test_round_trip_every_kind(preset):
    cfg = CFGS[preset]

    @settings(max_examples=60, deadline=None)
    @given(st.lists(_any_insn(cfg), min_size=1, max_size=6))
    def check(insns):
        blob = encode_program(insns, cfg)
        assert len(blob) == INSN_BYTES * len(insns)
        assert decode_program(blob, cfg) == insns
        for insn in insns:
            assert "\n" not in format_insn(insn)

    check()


@pytest.mark.parametrize("preset", PRESETS)
def test_uop_round_trip(preset):
    cfg = CFGS[preset]
    table = insn_layout(cfg).uop
    uop = st.builds(Uop, **{n: st.integers(0, (1 << w) - 1) for n, (_, w) in table.items()})

    @settings(max_examples=100, deadline=None)
    @given(st.lists(uop, max_size=20))
    def check(uops):
        blob = encode_uops(uops, cfg)
        assert len(blob) == 4 * len(uops)
        assert decode_uops(blob, cfg) == uops

    check()


# ------------------------------------------------------------------------------------------------
# Bit-exactness at the default configuration
# ------------------------------------------------------------------------------------------------
DEFAULT = CFGS["pynq-z1"]


@settings(max_examples=80, deadline=None)
@given(_insn_strategy(DEFAULT, MemInsn, Opcode.LOAD))
def test_load_bits_match_isa_doc(insn):
    assert encode(insn, DEFAULT) == _expected_word(insn, MEM_BITS)


@settings(max_examples=100, deadline=None)
@given(_insn_strategy(DEFAULT, MemInsn, Opcode.STORE))
def test_store_bits_match_isa_doc(insn):
    assert encode(insn, DEFAULT) == _expected_word(insn, MEM_BITS)


@settings(max_examples=80, deadline=None)
@given(_insn_strategy(DEFAULT, GemmInsn, Opcode.GEMM))
def test_gemm_bits_match_isa_doc(insn):
    assert encode(insn, DEFAULT) == _expected_word(insn, GEMM_BITS)


@settings(max_examples=80, deadline=None)
@given(_insn_strategy(DEFAULT, AluInsn, Opcode.ALU))
def test_alu_bits_match_isa_doc(insn):
    assert encode(insn, DEFAULT) == _expected_word(insn, ALU_BITS)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2047), st.integers(0, 2047), st.integers(0, 1023))
def test_uop_bits_match_isa_doc(dst, src, wgt):
    uop = Uop(dst, src, wgt)
    expected = _expected_word(uop, UOP_BITS)[:4]
    assert encode_uops([uop], DEFAULT) == expected


def test_known_words():
    # Hand-assembled words (bit positions from docs/vta-isa.md).
    assert encode(FinishInsn(), DEFAULT) == (3).to_bytes(16, "little")
    load = MemInsn(opcode=Opcode.LOAD, memory_type=MemType.WGT, sram_base=5, dram_base=0x100,
                   y_size=2, x_size=3, x_stride=7, y_pad_0=1, x_pad_1=15, push_next_dep=True)
    lo = 0 | (1 << 6) | (1 << 7) | (5 << 10) | (0x100 << 26)
    hi = 2 | (3 << 16) | (7 << 32) | (1 << 48) | (15 << 60)
    assert encode(load, DEFAULT) == lo.to_bytes(8, "little") + hi.to_bytes(8, "little")
    alu = AluInsn(alu_opcode=AluOp.SHR, use_imm=True, imm=-1, uop_end=1, iter_out=4)
    word = int.from_bytes(encode(alu, DEFAULT), "little")
    assert word & 7 == 4 and (word >> 108) & 7 == 3 and (word >> 111) & 1 == 1
    assert word >> 112 == 0xFFFF and (word >> 35) & 0x3FFF == 4 and (word >> 21) & 0x3FFF == 1


def test_default_layout_widths():
    lay = insn_layout(DEFAULT)
    assert lay.gemm["uop_bgn"] == (8, 13) and lay.gemm["uop_end"] == (21, 14)
    assert lay.gemm["wgt_factor_in"] == (118, 10)
    assert lay.uop["src_idx"] == (11, 11)
    assert lay.mem_layout.size == 128 and lay.uop_layout.size == 32


# ------------------------------------------------------------------------------------------------
# Range checks and bad input
# ------------------------------------------------------------------------------------------------
_KINDS = [(MemInsn, Opcode.LOAD), (MemInsn, Opcode.STORE), (GemmInsn, Opcode.GEMM),
          (AluInsn, Opcode.ALU)]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_out_of_range_field_is_named(preset):
    cfg = CFGS[preset]
    checked = 0
    for cls, opcode in _KINDS:
        for name, (off, width) in insn_layout(cfg).table(opcode).items():
            if name in ("opcode", "memory_type", "alu_opcode"):
                continue
            if name == "imm":
                bad_values = [1 << (width - 1), -(1 << (width - 1)) - 1]
            else:
                bad_values = [1 << width, -1]
            for bad in bad_values:
                insn = cls(opcode=opcode, **{name: bad})
                with pytest.raises(IsaError, match=rf"{opcode.name}\.{name} must be in .*"
                                                   rf"not {bad}"):
                    encode(insn, cfg)
                checked += 1
    assert checked > 80
    for name, (off, width) in insn_layout(cfg).uop.items():
        with pytest.raises(IsaError, match=rf"micro-op 1: {name} must be in \[0, "
                                           rf"{(1 << width) - 1}\], not {1 << width}"):
            encode_uops([Uop(), Uop(**{name: 1 << width})], cfg)


@pytest.mark.parametrize("raw", [5, 6, 7])
def test_unknown_opcode(raw):
    word = raw.to_bytes(16, "little")
    with pytest.raises(IsaError, match=rf"instruction 1: unknown opcode {raw}"):
        decode_program(encode(FinishInsn(), DEFAULT) + word, DEFAULT)


@pytest.mark.parametrize("raw", [5, 6, 7])
def test_unknown_memory_type(raw):
    word = (0 | (raw << 7)).to_bytes(16, "little")
    with pytest.raises(IsaError, match=rf"unknown memory_type {raw}"):
        decode(word, DEFAULT)


def test_unknown_alu_opcode():
    word = (4 | (6 << 108)).to_bytes(16, "little")
    with pytest.raises(IsaError, match=r"unknown alu_opcode 6"):
        decode(word, DEFAULT)


def test_truncated_streams():
    blob = encode_program([FinishInsn(), FinishInsn()], DEFAULT)
    with pytest.raises(IsaError, match=r"38 bytes, not a multiple of 16.*6 bytes"):
        decode_program(blob + b"\0" * 6, DEFAULT)
    with pytest.raises(IsaError, match=r"16 bytes, not 15"):
        decode(blob[:15], DEFAULT)
    with pytest.raises(IsaError, match=r"not a multiple of 4"):
        decode_uops(b"\0" * 7, DEFAULT)
    assert decode_program(b"", DEFAULT) == []


def test_fields_depend_on_config():
    tiny = CFGS["tiny"]
    # tiny: 512 micro-ops -> uop_bgn is 9 bits, so 511 fits and 512 does not.
    ok = GemmInsn(uop_bgn=511, uop_end=512)
    assert decode(encode(ok, tiny), tiny) == ok
    with pytest.raises(IsaError, match=r"GEMM\.uop_bgn must be in \[0, 511\]"):
        encode(dataclasses.replace(ok, uop_bgn=512), tiny)
