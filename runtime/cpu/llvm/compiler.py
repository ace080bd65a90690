"""Compile rendered LLVM IR to host machine code, with an on-disk cache keyed by the IR's hash.

The second step of the CPU fallback (render -> **compile** -> call). Object code is cached in
``$PYVTA_CACHE_DIR`` (default ``~/.cache/pyvta/llvm``) under the sha256 of the IR text, the host
CPU name and features and the LLVM version, so a second run of the same model compiles nothing:
it only loads the cached objects into one in-process MCJIT engine.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["LlvmCompiler", "CompileStats", "cache_dir", "llvm_available", "get_compiler"]

#: Bumped whenever the code generation changes in a way the IR text does not show.
_CODEGEN_VERSION = "1"
#: Header of a cache entry (followed by the object's sha256 and the object).
_MAGIC = b"pyvta-llvm-obj-1\n"

try:
    import llvmlite.binding as _llvm
except ImportError:          # pragma: no cover - exercised only where llvmlite is missing
    _llvm = None


def llvm_available() -> bool:
    """True when llvmlite can be imported (otherwise the numpy path runs)."""
    return _llvm is not None


def cache_dir() -> Path:
    """Directory of the compiled-object cache (``PYVTA_CACHE_DIR`` overrides the default)."""
    env = os.environ.get("PYVTA_CACHE_DIR")
    return Path(env) / "llvm" if env else Path.home() / ".cache" / "pyvta" / "llvm"


class CompileStats:
    """Counts of what the compiler did (to show that a second run compiles nothing)."""

    def __init__(self):
        self.compiled = 0          #: modules compiled from IR
        self.cache_hits = 0        #: modules loaded from the disk cache
        self.compile_seconds = 0.0

    def __repr__(self):
        return (f"CompileStats(compiled={self.compiled}, cache_hits={self.cache_hits}, "
                f"compile_seconds={self.compile_seconds:.3f})")


class LlvmCompiler:
    """Turns IR text into callable function addresses for the host CPU.

    Parameters
    ----------
    cache : str or Path, optional
        Cache directory; defaults to :func:`cache_dir`.
    """

    def __init__(self, cache=None):
        if _llvm is None:
            raise RuntimeError("llvmlite is not installed; the CPU fallback runs on numpy "
                               "(pip install llvmlite for compiled kernels)")
        _llvm.initialize_native_target()
        _llvm.initialize_native_asmprinter()
        self.cache = Path(cache) if cache is not None else cache_dir()
        target = _llvm.Target.from_default_triple()
        self.cpu = _llvm.get_host_cpu_name()
        self.features = _llvm.get_host_cpu_features().flatten()
        self.triple = _llvm.get_process_triple()
        self.tm = target.create_target_machine(cpu=self.cpu, features=self.features, opt=3,
                                               codemodel="jitdefault")
        self._engine = _llvm.create_mcjit_compiler(_llvm.parse_assembly(""), self.tm)
        self._loaded: dict = {}        # key -> True once its object is in the engine
        self._lock = threading.Lock()
        self.stats = CompileStats()
        self._machine_key = "|".join([self.triple, self.cpu, self.features,
                                      ".".join(map(str, _llvm.llvm_version_info)),
                                      _CODEGEN_VERSION])

    def key(self, ir_text: str) -> str:
        """The cache key of an IR module on this machine."""
        return hashlib.sha256((self._machine_key + "\n" + ir_text).encode()).hexdigest()

    def _compile_object(self, ir_text: str) -> bytes:
        t0 = time.perf_counter()
        mod = _llvm.parse_assembly(ir_text)
        mod.triple = self.triple
        mod.data_layout = str(self.tm.target_data)
        mod.verify()
        pto = _llvm.create_pipeline_tuning_options(speed_level=3)
        pto.loop_vectorization = True
        pto.slp_vectorization = True
        pto.loop_unrolling = True
        pb = _llvm.create_pass_builder(self.tm, pto)
        pb.getModulePassManager().run(mod, pb)
        obj = self.tm.emit_object(mod)
        self.stats.compiled += 1
        self.stats.compile_seconds += time.perf_counter() - t0
        return obj

    def _cached_object(self, key: str, ir_text: str) -> bytes:
        path = self.cache / key[:2] / f"{key}.o"
        if path.is_file():
            data = path.read_bytes()
            # Entries carry the object's sha256: LLVM crashes on a damaged object file, so a
            # truncated or corrupted entry is recompiled instead of loaded.
            head, digest, obj = data[:len(_MAGIC)], data[len(_MAGIC):len(_MAGIC) + 32], \
                data[len(_MAGIC) + 32:]
            if head == _MAGIC and hashlib.sha256(obj).digest() == digest:
                self.stats.cache_hits += 1
                return obj
        obj = self._compile_object(ir_text)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a concurrent reader never sees half an object.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(_MAGIC + hashlib.sha256(obj).digest() + obj)
            os.replace(tmp, path)
        except OSError:
            pass    # an unwritable cache only costs a recompilation next time
        return obj

    def load(self, ir_text: str, symbol: str) -> int:
        """Compile (or load from cache) ``ir_text`` and return the address of ``symbol``.

        Symbols must be unique per IR text: renderers name functions after the IR's hash.
        """
        with self._lock:
            key = self.key(ir_text)
            if key not in self._loaded:
                obj = self._cached_object(key, ir_text)
                self._engine.add_object_file(_llvm.ObjectFileRef.from_data(obj))
                self._engine.finalize_object()
                self._loaded[key] = True
            addr = self._engine.get_function_address(symbol)
            if not addr:
                raise RuntimeError(f"compiled module has no function {symbol!r}")
            return addr

    def assembly(self, ir_text: str) -> str:
        """Optimised assembly of ``ir_text`` (for inspecting vectorisation)."""
        mod = _llvm.parse_assembly(ir_text)
        mod.triple = self.triple
        mod.data_layout = str(self.tm.target_data)
        pto = _llvm.create_pipeline_tuning_options(speed_level=3)
        pb = _llvm.create_pass_builder(self.tm, pto)
        pb.getModulePassManager().run(mod, pb)
        return self.tm.emit_assembly(mod)


_COMPILERS: dict = {}


def get_compiler() -> LlvmCompiler:
    """The process-wide compiler for the current cache directory."""
    d = str(cache_dir())
    if d not in _COMPILERS:
        _COMPILERS[d] = LlvmCompiler(d)
    return _COMPILERS[d]
