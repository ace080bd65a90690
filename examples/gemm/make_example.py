"""Regenerate (or check) the bundled raw GEMM program.

    python examples/gemm/make_example.py            # writes insn.bin and dram.bin here
    python examples/gemm/make_example.py --check out.bin

The program computes ``clip((A @ W.T + bias) >> 8, 0, 127)`` as int8 for A (64 x 128),
W (48 x 128) and an int32 bias, with two virtual threads, on the default configuration
(pynq-z1, ``1x16_i8w8a32_15_15_18_17``). Everything is drawn from a fixed seed, so ``--check``
rebuilds the same program and compares the image written back by ``pyvta sim run`` with numpy.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from pyvta.sim.programs import gemm_program, numpy_reference

HERE = Path(__file__).resolve().parent
M, K, N, SHIFT, CLIP = 64, 128, 48, 8, (0, 127)


def build():
    rng = np.random.default_rng(2018)
    a = rng.integers(-128, 128, (M, K), dtype=np.int8)
    w = rng.integers(-128, 128, (N, K), dtype=np.int8)
    bias = rng.integers(-(1 << 12), 1 << 12, N).astype(np.int32)
    prog = gemm_program("pynq-z1", a, w, bias, shift=SHIFT, clip=CLIP, threads=2)
    return prog, numpy_reference(a, w, bias, SHIFT, CLIP)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="OUT_BIN",
                        help="compare a DRAM image written by `pyvta sim run` with numpy")
    args = parser.parse_args(argv)
    prog, expected = build()
    if args.check:
        got = prog.read_output(Path(args.check).read_bytes())
        bad = int(np.count_nonzero(got != expected))
        if bad:
            print(f"MISMATCH: {bad} of {expected.size} outputs differ")
            return 1
        print(f"OK: all {expected.size} outputs ({M}x{N} int8) equal numpy")
        return 0
    (HERE / "insn.bin").write_bytes(prog.encode())
    (HERE / "dram.bin").write_bytes(prog.dram.tobytes())
    out_addr = prog.out_elem * prog.cfg.out_elem_bytes
    print(f"wrote {len(prog.insns)} instructions and a {prog.dram.size}-byte DRAM image; "
          f"the result is {M}x{N} int8 in OUT tiles at byte {out_addr:#x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
