"""``pyvta run``: run a compiled model on the CPU, the functional simulator or the RTL."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["register"]


def register(sub) -> None:
    """Add the ``run`` command to the ``pyvta`` CLI."""
    p = sub.add_parser("run", help="run a compiled model (.pyvta) on a target",
                       description="Run MODEL.pyvta on --target cpu|fsim|rtl and print the time "
                       "(and cycles) of every partition and CPU node.")
    p.add_argument("model", help="compiled model (.pyvta) from `pyvta compile`")
    p.add_argument("--input", "-i", action="append", required=True, metavar="[NAME=]FILE",
                   help="input array (.npy, or .npz with one array per input name); "
                   "repeat for several inputs")
    p.add_argument("--input-name", action="append", default=[], metavar="NAME",
                   help="model input name for the matching --input (default: the model's "
                   "inputs in order)")
    p.add_argument("--target", "-t", default="fsim", choices=("cpu", "fsim", "rtl"),
                   help="where accelerator partitions run (default: fsim)")
    p.add_argument("--output", "-o", metavar="OUT.npz", help="write the outputs here")
    p.add_argument("--config", help="hardware configuration the model must be compiled for "
                   "(preset or JSON)")
    p.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"),
                   help="RTL simulator for --target rtl")
    p.add_argument("--cpu-backend", default=None, choices=("auto", "llvm", "numpy"),
                   help="CPU fallback implementation (default: llvm when llvmlite is present)")
    p.add_argument("--repeat", type=int, default=1, help="run N times, profile the last")
    p.add_argument("--quiet", "-q", action="store_true", help="print no profile")
    p.set_defaults(func=_run)


def _load_inputs(args, model_inputs) -> dict:
    names = [v.name for v in model_inputs]
    if args.input_name and len(args.input_name) != len(args.input):
        raise ValueError(f"{len(args.input_name)} --input-name for {len(args.input)} --input: "
                         f"give one name per input, or none")
    feeds = {}
    for k, spec in enumerate(args.input):
        name = None
        if "=" in spec and not Path(spec).exists():
            name, spec = spec.split("=", 1)
        if args.input_name:
            name = args.input_name[k]
        path = Path(spec)
        if not path.exists():
            raise FileNotFoundError(f"input file {spec!r} does not exist")
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"input file {spec!r} is not a .npy/.npz array file: {exc}") from None
        if isinstance(data, np.lib.npyio.NpzFile):
            for key in data.files:
                feeds[key] = data[key]
            continue
        if name is None:
            if k >= len(names):
                raise ValueError(f"input {spec!r} is input #{k + 1}, but the model has only "
                                 f"{len(names)} input(s): {', '.join(names)}")
            name = names[k]
        feeds[name] = data
    return feeds


def _run(args) -> int:
    from . import load
    say = (lambda msg: print(f"pyvta: {msg}", file=sys.stderr))
    session = load(args.model, target=args.target, config=args.config,
                   simulator=args.simulator, cpu_backend=args.cpu_backend, progress=say)
    feeds = _load_inputs(args, session.model.inputs)
    if args.repeat < 1:
        raise ValueError(f"--repeat must be at least 1, not {args.repeat}")
    for _ in range(args.repeat):
        outs = session.run(feeds)
    if not args.quiet:
        print(f"model {args.model} on target {args.target} "
              f"(config {session.cfg.fingerprint}, CPU backend {session.executor.backend})")
        print(session.profile_table())
    for name, arr in outs.items():
        flat = arr.reshape(-1)
        preview = np.array2string(flat[:8], precision=4, separator=", ")
        print(f"output {name}: shape {arr.shape} {arr.dtype} {preview}"
              f"{' ...' if flat.size > 8 else ''}")
    if args.output:
        np.savez(args.output, **outs)
        print(f"wrote {args.output}")
    session.close()
    return 0
