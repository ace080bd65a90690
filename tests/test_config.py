"""Hardware configuration: presets, derived sizes (against vta-isa.md's table) and validation."""

import json

import pytest

from pyvta.hw.config import ConfigError, HwConfig, list_presets, load_config

PRESETS = ["pynq-z1", "pynq-z2", "ultra96v2", "zcu104", "tiny"]


def test_every_preset_loads():
    assert sorted(list_presets()) == sorted(PRESETS)
    for name in PRESETS:
        cfg = load_config(name)
        assert cfg.name == name
        assert isinstance(cfg.fingerprint, str) and cfg.fingerprint.startswith(
            f"{cfg.batch}x{cfg.block_in}_i8w8a32_")


def test_default_is_vta_default():
    cfg = load_config()
    assert cfg == load_config("pynq-z1") == HwConfig()
    assert cfg.fingerprint == "1x16_i8w8a32_15_15_18_17"


def test_default_derived_sizes_match_isa_doc():
    # The table in docs/vta-isa.md, typed here independently of config.py.
    cfg = load_config("pynq-z1")
    assert (cfg.batch, cfg.block_in, cfg.block_out) == (1, 16, 16)
    assert cfg.inp_elem_bytes == 16
    assert cfg.wgt_elem_bytes == 256
    assert cfg.acc_elem_bytes == 64
    assert cfg.out_elem_bytes == 16
    assert cfg.uop_elem_bytes == 4
    assert cfg.uop_depth == 8192
    assert cfg.inp_depth == 2048
    assert cfg.wgt_depth == 1024
    assert cfg.acc_depth == 2048
    assert cfg.out_depth == 2048
    assert cfg.log_out_buff_size == 15
    assert cfg.macs_per_cycle == 256
    assert cfg.peak_gops == pytest.approx(51.2)
    assert cfg.axi_bytes == 8
    assert (cfg.cmd_queue_depth, cfg.dep_queue_depth) == (64, 8)
    assert cfg.fpga_resources == {"family": "xc7", "lut": 53200, "ff": 106400, "bram36": 140,
                                  "dsp": 220}


def test_other_presets():
    z = load_config("zcu104")
    assert z.axi_bytes == 16 and z.fingerprint == "1x16_i8w8a32_15_15_18_17_axi128"
    t = load_config("tiny")
    assert (t.block_in, t.inp_depth, t.wgt_depth, t.acc_depth, t.uop_depth) == (8, 256, 64, 256,
                                                                                 512)
    assert t.fingerprint == "1x8_i8w8a32_11_11_12_13_q16d4"


def test_user_json_file_loads(tmp_path):
    data = load_config("pynq-z1").to_dict()
    data.pop("name")
    data["log_batch"] = 1
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    cfg = load_config(path)
    assert cfg.name == "mine" and cfg.batch == 2 and cfg.inp_elem_bytes == 32
    assert cfg.fingerprint.startswith("2x16_")
    assert load_config(str(path)) == cfg


def test_to_dict_round_trip():
    for name in PRESETS:
        cfg = load_config(name)
        again = HwConfig.from_dict(json.loads(cfg.to_json()))
        assert again == cfg


@pytest.mark.parametrize("field,value,words", [
    ("log_block", 9, ["log_block", "9", "[1, 6]"]),
    ("log_block", 0, ["log_block", "0"]),
    ("log_batch", -1, ["log_batch", "-1"]),
    ("log_inp_width", 4, ["log_inp_width", "4"]),
    ("log_acc_width", 4, ["log_acc_width", "4"]),
    ("log_block", "4", ["log_block", "integer", "'4'"]),
    ("log_block", 4.0, ["log_block", "integer", "4.0"]),
    ("log_block", True, ["log_block", "integer", "True"]),
    ("axi_data_width", 48, ["axi_data_width", "48"]),
    ("clock_mhz", 0, ["clock_mhz", "0"]),
    ("clock_mhz", "fast", ["clock_mhz", "fast"]),
    ("fpga_part", "xc7z999", ["fpga_part", "xc7z999"]),
    ("dep_queue_depth", 0, ["dep_queue_depth", "0"]),
    ("cmd_queue_depth", 1, ["cmd_queue_depth", "1"]),
])
def test_invalid_values_name_field_and_value(field, value, words):
    with pytest.raises(ConfigError) as exc:
        HwConfig(**{field: value})
    for w in words:
        assert w in str(exc.value)


def test_inconsistent_values():
    # A WGT element (16x16 bytes) does not fit a 64-byte buffer.
    with pytest.raises(ConfigError, match=r"log_wgt_buff_size=6 is too small"):
        HwConfig(log_wgt_buff_size=6)
    # Too many elements for the 16-bit sram_base field.
    with pytest.raises(ConfigError, match=r"log_inp_buff_size=21.*65536"):
        HwConfig(log_block=1, log_inp_buff_size=21)
    # Elements must be whole AXI beats: an INP element of 2 bytes on a 64-bit bus.
    with pytest.raises(ConfigError, match=r"INP element is 2 bytes.*64-bit"):
        HwConfig(log_block=1, log_uop_buff_size=8, log_inp_buff_size=8, log_wgt_buff_size=8,
                 log_acc_buff_size=8)
    # Buffers too large for the instruction's fields.
    with pytest.raises(ConfigError, match=r"does not fit VTA's instruction format"):
        HwConfig(log_uop_buff_size=18)


def test_unknown_field_and_non_object(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown configuration field\(s\) 'log_blocks'"):
        HwConfig.from_dict({"log_blocks": 4})
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"must be a JSON object, not \[1, 2\]"):
        load_config(path)


def test_unreadable_or_missing_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"cannot read hardware configuration .*broken.json"):
        load_config(bad)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"cannot read"):
        load_config(binary)
    with pytest.raises(ConfigError, match=r"no preset or JSON file named 'nope'.*pynq-z1"):
        load_config("nope")


def test_replace_revalidates():
    cfg = load_config()
    assert cfg.replace(axi_data_width=128).axi_bytes == 16
    with pytest.raises(ConfigError, match="log_block"):
        cfg.replace(log_block=7)
    with pytest.raises(Exception):
        cfg.log_block = 3  # frozen
