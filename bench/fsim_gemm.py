"""Functional-simulator GEMM throughput versus numpy.

Builds a tiled int8 GEMM with ``pyvta.sim.programs.gemm_program`` (default 1024 x 1024 x 1024,
two virtual threads, no bias/shift/clip so the figure is the GEMM itself), runs it through the
functional simulator, and times numpy's int8 matmul with int32 accumulation
(``a.astype(int32) @ w.astype(int32).T``) in the same process. Prints both side by side with
their ratio; the project's floor is fsim within 5x of numpy.

    python bench/fsim_gemm.py [--m 1024 --k 1024 --n 1024] [--preset pynq-z1] [--repeat 3]
    python bench/fsim_gemm.py --resnet      # also the ResNet-18-shaped GEMMs, one line each
"""

import argparse
import time

import numpy as np

from pyvta.sim.dram import Dram
from pyvta.sim.fsim import FunctionalSimulator
from pyvta.sim.programs import gemm_program, numpy_reference


def best_of(repeat, fn):
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=1024)
    p.add_argument("--k", type=int, default=1024)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--preset", default="pynq-z1")
    p.add_argument("--threads", type=int, default=2, choices=(1, 2))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--epilogue", action="store_true",
                   help="add bias, >> 8 and clip [0, 127] (ALU passes) to the program")
    p.add_argument("--resnet", action="store_true",
                   help="also time 128^3 and the ResNet-18-shaped GEMMs (with the epilogue)")
    args = p.parse_args(argv)
    status = _main_gemm(args)
    if args.resnet:
        status |= _resnet_table(args)
    return status


RESNET_SHAPES = [(128, 128, 128), (3136, 576, 64), (784, 1152, 128), (196, 2304, 256),
                 (49, 4608, 512)]


def _resnet_table(args) -> int:
    rng = np.random.default_rng(1)
    print(f"\nResNet-18-shaped GEMMs with bias, >> 8, clip [0, 127], {args.threads} thread(s):")
    print(f"  {'M x K x N':<18}{'fsim s':>9}{'numpy s':>9}{'fsim/numpy':>12}{'model eff':>11}"
          f"{'insns':>7}  exact")
    bad = 0
    for m, k, n in RESNET_SHAPES:
        a = rng.integers(-128, 128, (m, k), dtype=np.int8)
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        bias = rng.integers(-(1 << 15), 1 << 15, n).astype(np.int32)
        prog = gemm_program(args.preset, a, w, bias, shift=8, clip=(0, 127),
                            threads=args.threads)
        blob, image = prog.encode(), prog.dram.tobytes()

        def run_fsim():
            dram = Dram(base=prog.dram.base, data=image)
            FunctionalSimulator(prog.cfg, dram).run(blob)
            return dram

        t_fsim, dram = best_of(args.repeat, run_fsim)
        t_np, _ = best_of(args.repeat, lambda: a.astype(np.int32) @ w.astype(np.int32).T)
        ok = np.array_equal(prog.read_output(dram), numpy_reference(a, w, bias, 8, (0, 127)))
        bad += not ok
        print(f"  {f'{m}x{k}x{n}':<18}{t_fsim:>9.3f}{t_np:>9.3f}{t_fsim / t_np:>11.2f}x"
              f"{prog.tiling.est_efficiency:>10.1%}{len(prog.insns):>7}  {ok}")
    return 1 if bad else 0


def _main_gemm(args) -> int:

    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (args.m, args.k), dtype=np.int8)
    w = rng.integers(-128, 128, (args.n, args.k), dtype=np.int8)
    extra = {}
    if args.epilogue:
        extra = dict(bias=rng.integers(-(1 << 15), 1 << 15, args.n).astype(np.int32), shift=8,
                     clip=(0, 127))
    else:
        extra = dict(clip=None)
    t0 = time.perf_counter()
    prog = gemm_program(args.preset, a, w, threads=args.threads, **extra)
    build = time.perf_counter() - t0
    blob = prog.encode()
    image = prog.dram.tobytes()

    def run_fsim():
        dram = Dram(base=prog.dram.base, data=image)
        counters = FunctionalSimulator(prog.cfg, dram).run(blob)
        return dram, counters

    t_fsim, (dram, counters) = best_of(args.repeat, run_fsim)
    got = prog.read_output(dram)
    ok = np.array_equal(got, numpy_reference(a, w, **extra))

    t_np, _ = best_of(args.repeat, lambda: a.astype(np.int32) @ w.astype(np.int32).T)
    macs = args.m * args.k * args.n
    ti = prog.tiling
    print(f"GEMM {args.m}x{args.k}x{args.n} int8 on {prog.cfg.name} ({prog.cfg.fingerprint}), "
          f"{args.threads} thread(s), tile mt={ti.mt} nt={ti.nt} kc={ti.kc} order={ti.order}")
    print(f"  program: {len(prog.insns)} instructions, built in {build:.3f} s; "
          f"{counters.gemm_uops} GEMM micro-op iterations; result equals numpy: {ok}")
    print(f"  {'':<28}{'seconds':>10}{'GMAC/s':>10}")
    print(f"  {'fsim (whole program)':<28}{t_fsim:>10.3f}{macs / t_fsim / 1e9:>10.2f}")
    print(f"  {'numpy int8->int32 matmul':<28}{t_np:>10.3f}{macs / t_np / 1e9:>10.2f}")
    ratio = t_fsim / t_np
    verdict = "within" if ratio <= 5 else "OUTSIDE"
    print(f"  fsim / numpy time ratio: {ratio:.2f}x ({verdict} the 5x floor; "
          f"{1 / ratio:.2f}x numpy's speed)")
    print(f"  simulated accelerator model estimate: {ti.est_cycles} cycles for {ti.ideal_cycles} "
          f"ideal ({ti.est_efficiency:.1%})")
    return 0 if ok and ratio <= 5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
