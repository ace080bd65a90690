"""Packed layouts: round trips, zero padding, and the im2col fold of the first convolution."""

import numpy as np
import pytest

from pyvta.compiler import qops
from pyvta.compiler.layout import (LayoutError, im2col, pack_activation, pack_weight,
                                   packed_shape, unpack_activation)
from pyvta.hw.config import load_config

PRESETS = ["tiny", "pynq-z1", "zcu104"]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (2, 16, 4, 4), (3, 37, 2, 9), (5, 70)])
def test_activation_round_trip(preset, shape):
    cfg = load_config(preset)
    x = np.random.default_rng(0).integers(-128, 128, shape, dtype=np.int8)
    packed = pack_activation(x, cfg)
    assert packed.shape == packed_shape(shape, cfg)
    assert np.array_equal(unpack_activation(packed.tobytes(), shape, cfg), x)


def test_activation_layout_and_padding():
    cfg = load_config("tiny")  # BLOCK 8
    x = np.arange(1 * 10 * 2 * 3).reshape(1, 10, 2, 3).astype(np.int8)
    p = pack_activation(x, cfg)
    assert p.shape == (1, 2, 2, 3, 1, 8)
    assert p[0, 1, 1, 2, 0, 1] == x[0, 9, 1, 2]
    assert np.all(p[0, 1, :, :, 0, 2:] == 0)  # channels 10..15 are zero padding


@pytest.mark.parametrize("preset", PRESETS)
def test_weight_packing(preset):
    cfg = load_config(preset)
    bo, bi = cfg.block_out, cfg.block_in
    w = np.random.default_rng(1).integers(-128, 128, (20, 11, 3, 2), dtype=np.int8)
    p = pack_weight(w, cfg)
    assert p.shape == (-(-20 // bo), -(-11 // bi), 3, 2, bo, bi)
    o, i = 19, 10
    assert p[o // bo, i // bi, 2, 1, o % bo, i % bi] == w[o, i, 2, 1]
    full = p.transpose(0, 4, 1, 5, 2, 3).reshape(p.shape[0] * bo, p.shape[1] * bi, 3, 2)
    assert np.array_equal(full[:20, :11], w) and not full[20:].any() and not full[:, 11:].any()


def test_im2col_equals_convolution():
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, (2, 3, 11, 9), dtype=np.int8)
    w = rng.integers(-128, 128, (5, 3, 7, 5), dtype=np.int8)
    kw = dict(stride=(2, 1), pads=(3, 2, 1, 2), dilation=(1, 2))
    ref = qops.conv2d_int32(x, w, **kw)
    cols = im2col(x, (7, 5), **kw)
    got = qops.conv2d_int32(cols, w.reshape(5, -1, 1, 1))
    assert np.array_equal(got, ref)


def test_bad_inputs():
    cfg = load_config("tiny")
    with pytest.raises(LayoutError, match="int8"):
        pack_activation(np.zeros((1, 2, 3, 3), np.float32), cfg)
    with pytest.raises(LayoutError, match="4-D"):
        pack_activation(np.zeros((2, 3, 3), np.int8), cfg)
    with pytest.raises(LayoutError, match="needs"):
        unpack_activation(b"\0" * 10, (1, 8, 2, 2), cfg)
    with pytest.raises(LayoutError, match="int8"):
        pack_weight(np.zeros((2, 2), np.int32), cfg)
