"""LLVM-compiled CPU kernels: render (renderer.py) -> compile (compiler.py) -> call (program.py)."""
