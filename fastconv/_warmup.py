"""Compile the common kernels ahead of the first call: ``fc.warmup()``, ``fastconv warmup``.

fastconv's CPU kernels are compiled by Numba on their first call and kept in Numba's
on-disk cache, so each kernel is compiled once per machine, not once per process. A fresh
install pays that compile on its first calls (seconds per kernel); ``warmup`` pays it up
front, in parallel worker processes, for the kernels of the common calls: convolution
forward (direct, few-channel, GEMM, FFT, Winograd), its input and weight gradients,
max/average pooling forward and backward and the rest of the pooling family (adaptive, Lp,
max-unpooling, unfold/fold), in float32 and float64.

Where the cache lives is Numba's rule: ``NUMBA_CACHE_DIR`` if set, else ``__pycache__``
beside the package's sources, else (a read-only install, e.g. as root into site-packages)
a per-user cache directory (``~/.cache/numba/...``). Each entry is keyed by its source
file's modification time and size and by the Numba version, so an upgrade of fastconv or
Numba recompiles instead of loading stale code.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The calls warmed, as (label, task name, dtype name); each runs in a worker process.
TASKS = [(f"{label} {dt}", name, dt)
         for dt in ("float32", "float64")
         for label, name in (("conv forward", "conv"), ("conv gradients", "grad"),
                             ("pooling", "pool"), ("pooling family", "family"),
                             ("SciPy filters", "filters"))]


@dataclass(frozen=True)
class CacheStatus:
    """Where compiled kernels are cached and how many of fastconv's are there."""

    directories: tuple[str, ...]
    nbytes: int
    cached: int  # kernels with at least one compiled signature on disk
    total: int   # fastconv's cacheable CPU kernels

    @property
    def warm(self) -> bool:
        return self.total > 0 and self.cached == self.total

    def __str__(self) -> str:
        where = ", ".join(self.directories) or "(none yet)"
        return (f"{where} ({self.cached} of {self.total} kernels compiled, "
                f"{self.nbytes / 2**20:.1f} MiB)")


def light_typeof() -> None:
    """Type plain ndarray arguments of fastconv's kernels without Numba's generic ``typeof``.

    A dispatcher types its arguments in Python on a signature's first call (and
    ``fastconv.cpu.small`` asks it to find a kernel in the cache): Numba's ndarray rule
    first tests ``isinstance(val, np.ma.MaskedArray)``, and that import of ``numpy.ma``
    is ~35 ms of CPU of a warm fresh process's first call. A plain ndarray (``type(val)
    is np.ndarray``, so never masked) of a fastconv kernel gets the type that rule builds
    (dtype, rank, layout, read-only); every other value, and every other package's
    functions, go through Numba's own. Installed once.
    """
    from numba.core.dispatcher import Dispatcher

    original = Dispatcher.typeof_pyval
    if getattr(original, "_fastconv", False):
        return
    from numba.core import types
    from numba.np import numpy_support

    def typeof_pyval(self, val):
        if type(val) is np.ndarray and getattr(self.py_func, "__module__", "").startswith(
                "fastconv."):
            try:
                dtype = numpy_support.from_dtype(val.dtype)
            except Exception:  # Numba's rule raises its own error for this dtype
                return original(self, val)
            return types.Array(dtype, val.ndim, numpy_support.map_layout(val),
                               readonly=not val.flags.writeable)
        return original(self, val)

    typeof_pyval._fastconv = True
    Dispatcher.typeof_pyval = typeof_pyval


def light_cache_load() -> None:
    """Load fastconv's cached kernels without first building Numba's whole compiler.

    Numba's cache loader refreshes the CPU target before every load: on the first one that
    imports every implementation module Numba has (typed containers, random generators,
    polynomials, jitclass, ...) and installs their typing and lowering registries, about
    0.3-0.4 s of CPU, most of a warm process's first call. A cached kernel needs none of
    it: its machine code is linked against the Numba runtime (NRT) only. For fastconv's
    own kernels (``fastconv.*`` functions) the loader here initialises the runtime and
    loads; a kernel that misses the cache still compiles as before (Numba's compiler
    refreshes the target itself before compiling), and every other function's loads are
    Numba's own. A fastconv kernel whose cache write fails (full disk, file-size limit) stays
    uncached and the call goes on. Installed once; does nothing if Numba's cache class has
    changed shape.
    """
    from numba.core.caching import FunctionCache

    original = FunctionCache.load_overload
    if getattr(original, "_fastconv", False) or not all(
            hasattr(FunctionCache, a) for a in ("_load_overload",
                                                "_guard_against_spurious_io_errors")):
        return
    from numba.core import environment
    from numba.core.runtime import rtsys

    rebuild = environment._rebuild_env

    def light_env(modname, consts, env_name):
        """Numba's ``_rebuild_env``, except that the environment of one of Numba's own
        implementations (``np.zeros``, ``np.dot``, ... inlined into a kernel) that holds
        no constants is rebuilt without importing its module (``numba.np.arrayobj`` and
        what it imports: 30-60 ms of a warm first call). Compiled nopython code never
        reads an environment's globals (only object mode does); its name is kept, so
        the environment still caches as Numba's own."""
        if consts or modname in sys.modules or not modname.startswith("numba."):
            return rebuild(modname, consts, env_name)
        env = environment.lookup_environment(env_name)
        if env is None:
            env = environment.Environment({"__name__": modname})
            env.env_name = env_name
            environment.Environment._memo[env_name] = env
        return env

    def load_overload(self, sig, target_context):
        func = getattr(self, "_py_func", None)
        if not getattr(func, "__module__", "").startswith("fastconv."):
            return original(self, sig, target_context)
        if not rtsys._init:  # the part of the refresh a loaded kernel needs
            initialize_runtime(target_context, self._cache_path)
        # under Numba's compiler lock (a dispatcher's compile holds it): no other load
        # sees the swapped rebuild
        environment._rebuild_env = light_env
        try:
            with self._guard_against_spurious_io_errors():
                return self._load_overload(sig, target_context)
        finally:
            environment._rebuild_env = rebuild

    load_overload._fastconv = True
    FunctionCache.load_overload = load_overload

    save = FunctionCache.save_overload

    def save_overload(self, sig, cres):
        """Numba's save, except that a cache write that fails (a full disk, a file-size
        limit, a directory that became read-only) leaves the kernel uncached instead of
        failing the call that compiled it: the result is already computed."""
        try:
            save(self, sig, cres)
        except OSError:
            if not getattr(getattr(self, "_py_func", None), "__module__",
                           "").startswith("fastconv."):
                raise

    FunctionCache.save_overload = save_overload


def initialize_runtime(target_context, cache_dir: str) -> None:
    """Numba's ``rtsys.initialize``, its LLVM module loaded as object code from
    ``cache_dir`` instead of compiled (25-40 ms of CPU in every process that loads a
    kernel); the first process compiles it as Numba does and writes that file. The file's
    name carries Numba's and llvmlite's versions and the codegen's target triple, CPU name
    and features; a file that is missing or unreadable is compiled and written again, and
    any other failure falls back to Numba's own initialisation."""
    import hashlib
    import pickle

    import llvmlite
    import numba
    from llvmlite import binding as ll
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import _nrt_python as _nrt
    from numba.core.runtime import nrtdynmod, rtsys

    with global_compiler_lock:  # as Numba's (a library's finalize requires it)
        if rtsys._init:
            return
        try:
            codegen = target_context.codegen()
            key = repr((numba.__version__, llvmlite.__version__, codegen.magic_tuple()))
            path = Path(cache_dir) / (
                f"fastconv-nrt-{hashlib.sha256(key.encode()).hexdigest()[:16]}.nbo")
            if numba.core.config.NRT_STATS:  # the steps of Numba's initialize
                _nrt.memsys_enable_stats()
            for name, address in _nrt.c_helpers.items():
                ll.add_symbol(name if name.startswith("_") else "NRT_" + name, address)
            try:
                library = codegen.unserialize_library(pickle.loads(path.read_bytes()))
            except Exception:  # missing or unreadable: compile it, as Numba does
                ir_mod, library = nrtdynmod.create_nrt_module(target_context)
                library.enable_object_caching()
                library.add_ir_module(ir_mod)
                library.finalize()
                _write_atomic(path, pickle.dumps(library.serialize_using_object_code()))
            rtsys._library, rtsys._init = library, True
        except Exception:  # Numba changed shape: its own initialisation
            rtsys.initialize(target_context)


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path`` as a new file (``_files.replacing``: never a partial file); a
    directory that cannot be written is left alone."""
    from fastconv._files import replacing

    try:
        with replacing(path) as tmp:
            tmp.write_bytes(data)
    except OSError:
        pass


def light_blas_import():
    """Load ``scipy.linalg.cython_blas`` on its own, before Numba's CPU target starts.

    Numba's target imports that module when it starts (``numba.np.arraymath`` checks that
    ``np.dot`` has a BLAS), and a submodule import runs its package first: all of
    ``scipy.linalg`` (decompositions, matrix functions, SciPy's array-API layer), about
    8x the module itself and a large part of a warm process's first call. Loaded alone
    (the same extension module, registered under its own name, so Numba, Cython's
    ``cimport`` and a later ``import scipy.linalg`` all find it), the first call skips
    that. Returns the module (None when SciPy is absent or the light load failed: then
    ``from scipy.linalg import cython_blas`` is the way); loads nothing when
    ``scipy.linalg`` is already imported.
    """
    import importlib.machinery
    import importlib.util
    import sys

    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return sys.modules[name]
    if "scipy.linalg" in sys.modules:
        return None
    try:
        package = importlib.util.find_spec("scipy.linalg")
        spec = importlib.machinery.PathFinder.find_spec(
            name, package.submodule_search_locations) if package else None
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception:  # any failure: leave it to Numba's own import, as before
        sys.modules.pop(name, None)
        return None
    sys.meta_path.insert(0, _BindCythonBlas())
    return module


class _BindCythonBlas:
    """A one-shot import hook: when ``scipy.linalg`` is imported later, its
    ``cython_blas`` attribute is set to the module :func:`light_blas_import` loaded, as a
    normal submodule import would have done."""

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery
        import sys

        if name != "scipy.linalg":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_module(module):
            run(module)
            blas = sys.modules.get("scipy.linalg.cython_blas")
            if blas is not None and not hasattr(module, "cython_blas"):
                module.cython_blas = blas

        loader.exec_module = exec_module
        return spec


def _rng_arrays(dtype: str, *shapes):
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _task_conv(dtype: str) -> None:
    from fastconv import conv

    tiny, w1 = _rng_arrays(dtype, (1, 1, 3, 3), (1, 1, 2, 2))
    conv.conv2d(tiny, w1)  # tiny direct core (fastconv.cpu.tiny)
    small, w2 = _rng_arrays(dtype, (1, 2, 16, 16), (2, 2, 3, 3))
    conv.conv2d(small, w2)  # serial direct core (conv.correlate_serial)
    w2.flags.writeable = False  # as the CLI's named kernels (a separate signature)
    conv.conv2d(small, w2, np.zeros(2, dtype))
    x, w, wd, w32, b = _rng_arrays(dtype, (2, 8, 24, 24), (8, 8, 3, 3), (8, 1, 3, 3),
                                   (32, 32, 3, 3), (8,))
    conv.conv2d(x, w, b, padding=1, algorithm="direct")  # 4-channel row kernel
    conv.conv2d(x, wd, padding=1, groups=8)  # few-channel kernel (depthwise)
    conv.conv2d(x, w, padding=1, padding_mode="reflect", algorithm="direct")
    conv.conv2d(x, w, padding=1, algorithm="gemm")  # im2col
    conv.conv2d(x, w, stride=2, algorithm="gemm")
    conv.conv2d(x, w, b, stride=2, algorithm="direct_vec")  # microkernel: one-vector form
    x3c, w64 = _rng_arrays(dtype, (2, 3, 24, 24), (64, 3, 3, 3))
    conv.conv2d(x3c, w64, stride=2, algorithm="direct_vec")  # microkernel: wide rows form
    x32, = _rng_arrays(dtype, (2, 32, 24, 24))
    conv.conv2d(x32, w32, padding=1, algorithm="gemm")  # shifted GEMM
    x4i, w1x1 = _rng_arrays(dtype, (4, 32, 4, 4), (8, 32, 1, 1))
    conv.conv2d(x4i, w1x1, algorithm="gemm")  # 1x1 GEMM (float32, AVX-512: pointwise_rows)
    x1, w1d, x3, w3 = _rng_arrays(dtype, (1, 4, 40), (8, 4, 3), (1, 8, 3, 6, 9), (8, 8, 2, 3, 3))
    conv.conv1d(x1, w1d, padding=1, algorithm="gemm")  # folded GEMM
    conv.conv3d(x3, w3, padding=1, algorithm="gemm")  # F(4, 3) along W (winograd_w)
    x15, w15 = _rng_arrays(dtype, (1, 16, 20), (8, 16, 5))
    conv.conv1d(x15, w15, padding=2, algorithm="gemm")  # F(4, 5) along W (winograd_w)
    plane, big = _rng_arrays(dtype, (1, 1, 48, 48), (1, 1, 20, 20))
    conv.conv2d(plane, big, padding="same", algorithm="fft")
    conv.conv2d(x, w, b, padding=1, algorithm="winograd")  # staged (36 tiles an image)
    x16, w16 = _rng_arrays(dtype, (1, 16, 32, 32), (16, 16, 3, 3))
    for _ in range(2):  # the second call compares the cached weight transform's bits
        conv.conv2d(x16, w16, padding=1, algorithm="winograd")  # fused (64 tiles an image)
    col, row = _rng_arrays(dtype, (7, 1), (1, 7))
    conv.conv2d(plane, (col * row)[None, None], padding="same")  # rank 1: separable passes


def _task_grad(dtype: str) -> None:
    from fastconv import conv, grad, layers

    x, w, g = _rng_arrays(dtype, (2, 8, 12, 12), (8, 8, 3, 3), (2, 8, 12, 12))
    for algorithm in ("direct", "gemm"):
        grad.conv2d_input(x.shape, w, g, padding=1, algorithm=algorithm)
        grad.conv2d_weight(x, w.shape, g, padding=1, algorithm=algorithm)
    grad.conv2d_input(x.shape, w, g, padding=1, algorithm="winograd")
    grad.conv2d_input(x.shape, w, g[..., ::2, ::2], padding=1, stride=2)
    grad.conv2d_input(x.shape, w, g, padding=1, padding_mode="reflect")
    grad.conv_bias(g)
    x32, g32 = _rng_arrays(dtype, (2, 32, 32, 32), (2, 32, 32, 32))
    grad.conv2d_weight(x32, (32, 32, 3, 3), g32, padding=1)  # "auto": Winograd, fused form
    # its staged form (many channels, B5's 256 x 256; "auto" sends none this small there)
    from fastconv.cpu.grad import weight_winograd

    x128, g128 = _rng_arrays(dtype, (1, 128, 8, 8), (1, 128, 8, 8))
    weight_winograd(x128[:, :, None], g128[:, :, None], np.empty((128, 128, 1, 3, 3), dtype),
                    1, (1, 1))
    # small images (LeNet's second layer): one product per chunk of images on its im2col block
    xs, ws, gs = _rng_arrays(dtype, (8, 6, 14, 14), (16, 6, 5, 5), (8, 16, 10, 10))
    conv.conv2d(xs, ws)  # 1.9 M multiply-adds a chunk: the product on NumPy's BLAS
    conv.conv2d(xs[:2], ws)  # 0.5 M: the product inside the chunk's kernel (one chunk: serial)
    x1, w1 = _rng_arrays(dtype, (8, 1, 28, 28), (6, 1, 5, 5))
    conv.conv2d(x1, w1, padding=2)  # LeNet's first layer: several chunks, one parallel region
    # (small.KERNELS is True here: compiled, not the cold cache's NumPy form)
    grad.conv2d_input(xs.shape, ws, gs)  # 6 channels: direct_wide (fastconv.cpu.microkernel)
    x12, w12 = _rng_arrays(dtype, (8, 12, 14, 14), (16, 12, 5, 5))
    grad.conv2d_input(x12.shape, w12, gs)  # 12 channels: the small-image path's scatter
    grad.conv2d_weight(x12, w12.shape, gs)  # and its im2col weight gradient
    grad.conv2d_weight(xs, ws.shape, gs)
    pool_layer = layers.MaxPool2d(2)  # keeps each maximum's window position
    pool_layer.backward(np.ones_like(pool_layer.forward(gs)))
    tiny, = _rng_arrays(dtype, (1, 1, 3, 3))
    grad.conv2d_input(tiny.shape, np.ones((1, 1, 2, 2), dtype), np.ones((1, 1, 2, 2), dtype))
    grad.conv2d_weight(tiny, (1, 1, 2, 2), np.ones((1, 1, 2, 2), dtype))


def _task_pool(dtype: str) -> None:
    from fastconv import grad, layers, pool
    from fastconv.cpu import pool as cpu_pool

    x, = _rng_arrays(dtype, (2, 4, 12, 12))
    y, idx = pool.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    grad.max_pool2d(np.ones_like(y), x, 3, stride=2, padding=1)  # (the 3x3 stride-2 kernel)
    grad.max_pool2d(np.ones_like(x), x, 3, stride=1, padding=1)  # (the general kernel)
    pool_layer = layers.MaxPool2d(3, stride=2, padding=1)  # keeps a code per window
    pool_layer.backward(np.ones_like(pool_layer.forward(x)))
    # (that call is small enough to run serially: its prange form compiled directly)
    keys, consts, lanes = cpu_pool._keys(x.dtype)
    code = np.full((8, 6, cpu_pool.code_width(6)), 255, np.uint8)
    cpu_pool.max_pool_codes_grad_3s2_par(np.ones((8, 6, 6), x.dtype), code,
                                         np.empty((8, 144), x.dtype), 12, 12, 1, 1, keys,
                                         consts, False, 0, lanes, 2)
    x3 = np.ascontiguousarray(x.reshape(8, 12, 12))
    cpu_pool.max_pool_grad_3s2_par(x3, np.ones((8, 6, 6), x.dtype), np.empty((8, 144), x.dtype),
                                   1, 1, keys, consts, False, 0, lanes, 2)
    y = pool.avg_pool2d(x, 3, stride=2, padding=1)
    grad.avg_pool2d(np.ones_like(y), x, 3, stride=2, padding=1)
    grad.avg_pool2d(np.ones_like(x), x, 3, stride=1, padding=1)  # (other strides' kernel)
    pool.max_pool2d(x, 2)
    pool.avg_pool2d(x, 2)
    serial, cpu_pool.SERIAL_ELEMENTS = cpu_pool.SERIAL_ELEMENTS, 0  # the prange forms too
    try:
        pool.max_pool2d(x, 3, stride=2, padding=1)
        pool.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
        grad.max_pool2d(np.ones_like(x), x, 3, stride=1, padding=1)
        pool_layer(x)
        grad.avg_pool2d(np.ones_like(pool.avg_pool2d(x, 3, stride=2, padding=1)), x, 3,
                        stride=2, padding=1)
        grad.avg_pool2d(np.ones_like(x), x, 3, stride=1, padding=1)
    finally:
        cpu_pool.SERIAL_ELEMENTS = serial


def _task_family(dtype: str) -> None:
    from fastconv import adaptive, grad, pool, unpool
    from fastconv.fold import fold, unfold

    x, = _rng_arrays(dtype, (2, 3, 9, 9))
    for output_size in ((4, 3), 1):
        y = adaptive.adaptive_avg_pool2d(x, output_size)
        grad.adaptive_avg_pool2d(np.ones_like(y), x, output_size)
    y = adaptive.adaptive_max_pool2d(x, (4, 3))
    grad.adaptive_max_pool2d(np.ones_like(y), x, (4, 3))
    for p in (2, np.inf):
        y = adaptive.lp_pool2d(x, p, 2)
        grad.lp_pool2d(np.ones_like(y), x, p, 2)
    y, idx = pool.max_pool2d(x, 2, return_indices=True)
    u = unpool.max_unpool2d(y, idx, 2, output_size=(9, 9))
    grad.max_unpool2d(np.ones_like(u), y, idx, 2, output_size=(9, 9))
    fold(unfold(x, 2), (9, 9), 2)


def _task_filters(dtype: str) -> None:
    from fastconv import ndimage

    vol, k3 = _rng_arrays(dtype, (6, 7, 8), (3, 3, 3))
    ndimage.correlate(vol, k3)  # padded copy (every mode), then the direct kernel
    ndimage.gaussian_filter(vol, 1.0)  # 1-D passes along rows and along the other axes


def _run_task(name: str, dtype: str) -> float:
    """Worker entry point: run one task, return its seconds."""
    from fastconv.cpu import small

    t0 = time.perf_counter()
    kernels, small.KERNELS = small.KERNELS, True  # compiled, not the cold-cache NumPy form
    try:
        {"conv": _task_conv, "grad": _task_grad, "pool": _task_pool,
         "family": _task_family, "filters": _task_filters}[name](dtype)
    finally:
        small.KERNELS = kernels
        small._TIER["ready"].clear()  # this process's decisions: the kernels are ready now
    return time.perf_counter() - t0



#: Kernels of fallback paths that the common calls never run (not warmed, not counted).
FALLBACKS = {
    "fastconv.cpu.gemm.im2col",  # im2col GEMM without SciPy's BLAS
    "fastconv.cpu.pool.avg_pool_grad_long",  # avg backward, > 3 windows cover a column
    "fastconv.cpu.pool.avg_pool_grad_long_par",
}


def _kernels():
    """fastconv's cacheable CPU kernels (Numba dispatchers; inlined helpers and
    ``FALLBACKS`` excluded)."""
    from numba.core.registry import CPUDispatcher

    found = {}  # (the CPU backend's modules by path: fastconv.cpu imports this module)
    for info in pkgutil.iter_modules([str(Path(__file__).parent / "cpu")], "fastconv.cpu."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (isinstance(obj, CPUDispatcher) and obj._cache is not None
                    and getattr(obj._cache, "_cache_file", None) is not None
                    and obj.targetoptions.get("inline", "never") == "never"
                    and f"{info.name}.{obj.py_func.__name__}" not in FALLBACKS):
                found[id(obj)] = obj
    return list(found.values())


def cache_status() -> CacheStatus:
    """Where fastconv's compiled kernels are cached, their size and how many are there.

    Examples
    --------
    >>> from fastconv._warmup import cache_status
    >>> cache_status().total > 0
    True
    """
    dirs, cached, total, nbytes = set(), 0, 0, 0
    for disp in _kernels():
        total += 1
        cache = disp._cache
        dirs.add(cache._cache_path)
        if cache._cache_file._load_index():
            cached += 1
    stems = {d._cache._cache_file._index_name.split("-")[0] for d in _kernels()}
    for d in dirs:
        p = Path(d)
        if p.is_dir():
            nbytes += sum(f.stat().st_size for f in p.iterdir()
                          if f.suffix in (".nbi", ".nbc") and f.name.split("-")[0] in stems)
    return CacheStatus(tuple(sorted(dirs)), nbytes, cached, total)


def warmup(workers: int | None = None, progress: Callable[[str, float], None] | None = None
           ) -> CacheStatus:
    """Compile the common kernels into Numba's on-disk cache; returns the cache's status.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: the CPU count, at most ``len(TASKS)``).
    progress : callable(label, seconds), optional
        Called as each task finishes.

    Returns
    -------
    CacheStatus
        ``directories``, ``nbytes``, ``cached`` of ``total`` kernels, ``warm``.

    Examples
    --------
    >>> status = fc.warmup()           # doctest: +SKIP
    >>> status.warm                    # doctest: +SKIP
    True
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    workers = max(1, min(workers or os.cpu_count() or 1, len(TASKS)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_task, name, dt): label for label, name, dt in TASKS}
        for fut in as_completed(futures):
            seconds = fut.result()
            if progress is not None:
                progress(futures[fut], seconds)
    # Workers that compiled different signatures of one kernel at the same time can each
    # have written its cache index without the other's entry: this pass loads what is
    # there and compiles what went missing, so the cache ends complete.
    for _, name, dt in TASKS:
        _run_task(name, dt)
    return cache_status()
