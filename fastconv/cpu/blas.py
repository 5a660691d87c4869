"""BLAS ``sgemm``/``dgemm`` on strided NumPy views, with explicit leading dimensions.

The shifted-GEMM convolution (``fastconv.cpu.gemm``) multiplies overlapping windows of
one flat buffer (row stride = the plane size, an ``lda``, no copy) and accumulates with
``beta = 1``; ``numpy.matmul`` can do neither without copies. SciPy exports the BLAS it
links (OpenBLAS in its wheels) as ``scipy.linalg.cython_blas``; its ``__pyx_capi__``
capsules are C functions taking every argument by pointer (Fortran ABI, column major).
A row-major ``C = op(A) @ op(B)`` is the column-major ``C^T = op(B)^T @ op(A)^T``, so
:class:`Gemm` swaps the operands.

SciPy is a runtime dependency for this reason (Numba's own ``np.dot`` needs SciPy's BLAS
too); without it :func:`available` is False and the GEMM algorithm falls back to
``im2col`` + ``numpy.matmul``.

Threads: :func:`parallel` runs independent tasks (each a sequence of BLAS calls writing
its own part of the result) on ``numba.get_num_threads()`` Python threads, with the BLAS
itself single-threaded meanwhile: threadpoolctl's ``limit(limits=1, user_api="blas")``,
taken by the first fastconv call in flight and restored when the last concurrent one
leaves (several Python threads may call fastconv at once; no setting outlives a call, and
Numba's thread count is only read). ctypes releases the
GIL during each call, so the threads multiply in parallel; there is one join per
convolution instead of a BLAS-internal barrier per call (on a loaded 2-core machine
OpenBLAS's own threading made W3 five times slower than one thread). Never called inside
a Numba ``prange``. Because every task is one fixed, single-threaded sequence of calls,
results are bit-identical for any thread count.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - an offline machine without it (e.g. the GPU
    ThreadpoolController = None  # check's): same results, the BLAS threads not limited

_VP = ctypes.c_void_p
_PROTO = ctypes.CFUNCTYPE(None, *([_VP] * 13))
_lock = threading.Lock()
_state: dict = {}
_nested = threading.local()  # depth of _SingleThreadedBlas on this thread


def _capsule_pointer(capsule) -> int:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype, get_ptr.argtypes = _VP, [ctypes.py_object, ctypes.c_char_p]
    return get_ptr(capsule, get_name(capsule))


#: Fortran gemm symbols tried in NumPy's BLAS, with their integer type (ILP64 first:
#: NumPy's wheels ship the 64-bit-integer scipy-openblas).
_SYMBOLS = (("scipy_sgemm_64_", "scipy_dgemm_64_", np.int64), ("sgemm_64_", "dgemm_64_", np.int64),
            ("scipy_sgemm_", "scipy_dgemm_", np.int32), ("sgemm_", "dgemm_", np.int32))


def _numpy_blas(controller):
    """(functions by dtype, integer type) of the OpenBLAS that NumPy links (the one
    ``numpy.matmul`` runs; in NumPy's wheels a newer build than SciPy's, measured 10-40 %
    faster on this project's products), or None when NumPy's BLAS is not a separate
    OpenBLAS of NumPy's own (conda, MKL builds): then SciPy's ``cython_blas``."""
    for lib in controller.select(internal_api="openblas").lib_controllers:
        if not os.path.basename(os.path.dirname(lib.filepath)).startswith("numpy"):
            continue
        try:
            dll = ctypes.CDLL(lib.filepath)
        except OSError:  # pragma: no cover
            continue
        for sname, dname, itype in _SYMBOLS:
            sfn, dfn = getattr(dll, sname, None), getattr(dll, dname, None)
            if sfn is not None and dfn is not None:
                return ({np.dtype(np.float32): _PROTO(ctypes.cast(sfn, _VP).value),
                         np.dtype(np.float64): _PROTO(ctypes.cast(dfn, _VP).value)}, itype)
    return None


def _load() -> dict:
    with _lock:
        if _state:
            return _state
        # loaded on its own by fastconv.cpu (``_warmup.light_blas_import``): not all of
        # scipy.linalg (0.2-0.4 s of a first call)
        cython_blas = sys.modules.get("scipy.linalg.cython_blas")
        if cython_blas is None:
            try:
                from scipy.linalg import cython_blas
            except ImportError:  # pragma: no cover - SciPy absent: im2col + numpy.matmul
                cython_blas = None
        # after NumPy's and SciPy's BLAS are loaded
        controller = ThreadpoolController() if ThreadpoolController is not None else None
        found = (_numpy_blas(controller) if cython_blas is not None and controller is not None
                 else None)
        if cython_blas is not None:  # the gemm Numba's np.dot calls (int32 arguments)
            caps = cython_blas.__pyx_capi__
            _state["scipy"] = ({np.dtype(np.float32): _PROTO(_capsule_pointer(caps["sgemm"])),
                                np.dtype(np.float64): _PROTO(_capsule_pointer(caps["dgemm"]))},
                               np.int32)
        if found is not None:
            _state["fn"], _state["int"] = found
        elif cython_blas is not None:
            _state["fn"], _state["int"] = _state["scipy"]
        _state["controller"] = controller
        _state["users"] = 0
        _state["limiter"] = _state["owner"] = None
        _state["pool"] = None
        _state["ok"] = cython_blas is not None
        return _state


def available() -> bool:
    """Whether a BLAS with strided ``gemm`` is usable (SciPy installed)."""
    return bool(_load()["ok"])


class _SingleThreadedBlas:
    """Context: the BLAS runs single-threaded while any fastconv product is in flight.

    threadpoolctl lets one Python thread at a time control OpenBLAS (limits set from other
    threads are ignored until that thread's ``with`` block ends), so whoever takes the
    limit restores it: the first fastconv call in flight takes it on its own thread; if it
    finishes while other calls still multiply, it restores and hands the limit to one
    dedicated thread, which restores it after the last call. A limit the application
    holds itself (``with threadpool_limits(...)`` on another thread) is left alone.
    """

    def __enter__(self):
        st = _load()
        _nested.depth = getattr(_nested, "depth", 0) + 1
        if _nested.depth > 1:  # nested on this thread (a call holding it across parallel())
            return
        with _lock:
            if st["users"] == 0:
                st["limiter"], st["owner"] = _take_limit(), threading.current_thread()
            st["users"] += 1

    def __exit__(self, *exc):
        _nested.depth -= 1
        if _nested.depth:
            return
        st = _state
        me = threading.current_thread()
        with _lock:
            st["users"] -= 1
            if st["users"] == 0:
                if st["owner"] is me:
                    st["limiter"].__exit__(None, None, None)
                else:  # the dedicated thread holds it
                    _control(st["limiter"].__exit__, None, None, None)
                st["limiter"] = st["owner"] = None
            elif st["owner"] is me:  # others still multiply: hand the limit over
                st["limiter"].__exit__(None, None, None)
                st["limiter"], st["owner"] = _control(_take_limit), st["control_thread"]


class _NoLimit:
    """What :func:`_take_limit` holds without threadpoolctl: nothing to restore."""

    def __exit__(self, *exc):
        return None


def _take_limit():
    ctl = _state["controller"]
    blas_libs = [c for c in ctl.lib_controllers if c.user_api == "blas"] if ctl else []
    if all(c.get_num_threads() == 1 for c in blas_libs):  # one thread already (~1 us
        return _NoLimit()  # to ask; a limit taken and restored costs ~0.2 ms a call)
    return ctl.limit(limits=1, user_api="blas").__enter__()


def _control(fn, *args):
    """``fn(*args)`` on the dedicated thread that holds the BLAS limit under contention."""
    st = _state
    if st.get("control") is None:
        st["control"] = ThreadPoolExecutor(1, thread_name_prefix="fastconv-blas-limit")
        st["control_thread"] = st["control"].submit(threading.current_thread).result()
    return st["control"].submit(fn, *args).result()


def single_threaded_blas() -> _SingleThreadedBlas:
    """The context :func:`parallel` holds (for callers that run BLAS products themselves)."""
    return _SingleThreadedBlas()


def parallel(task, ntasks: int) -> None:
    """``task(i)`` for ``i in range(ntasks)`` on ``numba.get_num_threads()`` threads (the
    caller and a shared pool), single-threaded BLAS meanwhile; exceptions re-raised.
    Tasks may also run NumPy copies or ``nogil`` serial Numba kernels (both release the
    GIL): one join for the whole batch instead of a Numba parallel region's barrier."""
    # one task asks no thread count: the first ask starts Numba's thread pool (~25 ms)
    workers = 1 if ntasks <= 1 else max(1, min(numba.get_num_threads(), ntasks))
    with _SingleThreadedBlas():
        if workers == 1:
            for i in range(ntasks):
                task(i)
            return
        st = _state
        with _lock:
            if st.get("pool") is None or st["pool"]._max_workers < workers - 1:
                st["pool"] = ThreadPoolExecutor(max(workers - 1, numba.config.NUMBA_NUM_THREADS),
                                                thread_name_prefix="fastconv-blas")
            pool = st["pool"]
        counter = itertools.count()

        def work():
            for i in iter(counter.__next__, None):
                if i >= ntasks:
                    return
                task(i)

        futures = [pool.submit(work) for _ in range(workers - 1)]
        try:
            work()
        finally:
            for f in futures:
                f.result()


#: The BLAS ``gemm`` with every (pointer) argument typed as an integer, so that Numba
#: calls it with array addresses (same x86-64/AArch64 ABI).
_NUMBA_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_size_t] * 13))
_NUMBA_FN: dict = {}


def numba_call(prod: Gemm, beta_one: bool = False):
    """(function pointer, constant arguments) to run ``prod``'s product inside Numba: no
    Python and no GIL between a task's calls. The arguments are ``(ta, tb, n, m, k,
    alpha, ldb, lda, beta = 0, ldc)`` as addresses (``prod`` keeps them alive), plus the
    address of ``beta = 1`` last with ``beta_one``; the kernel passes its operands'
    addresses between them (``fastconv.cpu.winograd.products``)."""
    dt = prod._scal.dtype
    if dt not in _NUMBA_FN:
        _NUMBA_FN[dt] = _NUMBA_PROTO(ctypes.cast(_load()["fn"][dt], ctypes.c_void_p).value)
    args = [prod._ta, prod._tb, prod._n, prod._m, prod._k, prod._alpha, prod._ldb, prod._lda,
            prod._beta[0], prod._ldc] + ([prod._beta[1]] if beta_one else [])
    return _NUMBA_FN[dt], np.array(args, dtype=np.uintp)


_T, _N = ctypes.c_char(b"T"), ctypes.c_char(b"N")


class Gemm:
    """One product shape, bound once: ``C (M x N) = alpha * op(A) @ op(B) + beta * C``.

    Row-major operands given by address; ``op(A)`` is ``(M x K)`` (``A`` stored
    ``(K x M)`` when ``ta``), ``op(B)`` is ``(K x N)`` (stored ``(N x K)`` when ``tb``);
    ``lda``/``ldb``/``ldc`` are row strides in elements. Calling with the three
    addresses runs one BLAS call; the integer arguments live in this object, so a
    batch of products of one shape pays only the foreign call. ``scipy``: SciPy's BLAS
    (``cython_blas``) instead of NumPy's: with C-contiguous operands and no transposes,
    the very call (function and arguments) that Numba's ``np.dot(A, B, C)`` makes, so
    the same bits.
    """

    def __init__(self, dtype, M, N, K, lda, ldb, ldc, *, ta=False, tb=False, scipy=False):
        dtype = np.dtype(dtype)
        fns, itype = _load()["scipy"] if scipy else (_load()["fn"], _state["int"])
        self._fn = fns[dtype]
        self._ints = np.array([N, M, K, ldb, lda, ldc], dtype=itype)
        self._scal = np.array([1.0, 0.0, 1.0], dtype=dtype)  # alpha, beta 0, beta 1
        i, s = self._ints.ctypes.data, self._scal.ctypes.data
        isz, ssz = self._ints.itemsize, dtype.itemsize
        self._ta = ctypes.addressof(_T if tb else _N)  # column major: B's flag first
        self._tb = ctypes.addressof(_T if ta else _N)
        self._n, self._m, self._k = i, i + isz, i + 2 * isz
        self._ldb, self._lda, self._ldc = i + 3 * isz, i + 4 * isz, i + 5 * isz
        self._alpha, self._beta = s, (s + ssz, s + 2 * ssz)

    def __call__(self, a: int, b: int, c: int, accumulate: bool) -> None:
        self._fn(self._ta, self._tb, self._n, self._m, self._k, self._alpha, b, self._ldb,
                 a, self._lda, self._beta[accumulate], c, self._ldc)


def address(a: np.ndarray) -> int:
    """Address of an array's first element."""
    return a.__array_interface__["data"][0]
