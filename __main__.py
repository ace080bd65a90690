"""The ``pyvta`` command line.

Each subpackage contributes its commands through a ``cli.register(subparsers)`` function;
this file only dispatches and turns expected errors into one clear line (set
``PYVTA_DEBUG=1`` for the full traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Subpackages that add commands, in the order they appear in --help.
_COMMAND_MODULES = ("pyvta.hw.cli", "pyvta.sim.cli", "pyvta.compiler.cli", "pyvta.runtime.cli",
                    "pyvta.driver.cli")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="pyvta", description="Compile, simulate and deploy int8 networks on a VTA-style "
        "accelerator.")
    parser.add_argument("--version", action="version", version=f"pyvta {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # that subpackage has no commands (yet)
            raise
        module.register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("pyvta: interrupted", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        if os.environ.get("PYVTA_DEBUG"):
            raise
        print(f"pyvta: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
