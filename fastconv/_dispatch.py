"""Which backend runs a call: NumPy data on the CPU; ``__cuda_array_interface__`` data,
``device="cuda"`` or ``FASTCONV_DEVICE=cuda`` on the GPU.

Backends are imported lazily, so ``import fastconv`` never imports Numba's CUDA target
(nor, for ``fastconv shape``/``--help``, Numba at all). Each backend package
(``fastconv.cpu``, ``fastconv.cuda``) implements the same contract, written once in
``CONTRACT_DOC`` below and appended to their ``__init__`` docstrings (``wrap``,
``asarray``, ``empty``, ``pad``, ``correlate``, ... taking 5-D arrays and ints);
``tests/test_structure.py`` compares their signatures.
"""

from __future__ import annotations

import importlib

import numpy as np

from fastconv._config import env_device

DEVICES = ("cpu", "cuda")

#: The backend contract: the names both ``fastconv.cpu`` and ``fastconv.cuda`` implement
#: with the same arguments (:data:`CONTRACT_DOC` says what each one does).
CONTRACT = (
    "wrap", "asarray", "empty", "zeros", "finish", "pad", "unpad",
    "correlate", "correlate_input", "correlate_weight", "sum_channels",
    "max_pool", "avg_pool", "max_pool_backward", "avg_pool_backward",
    "adaptive_avg_pool", "adaptive_max_pool", "adaptive_avg_pool_backward",
    "adaptive_max_pool_backward", "power", "lp_finish", "lp_grad_out", "lp_grad_in",
    "signed_abs", "mul_sign", "fold", "unfold", "max_unpool", "max_unpool_backward",
)

#: What each name of :data:`CONTRACT` does: appended to both backends' ``__init__``
#: docstrings, so ``help(fastconv.cpu)`` and ``help(fastconv.cuda)`` show it.
CONTRACT_DOC = """
The backend contract (``fastconv._dispatch.CONTRACT``; ``fastconv.cpu`` and
``fastconv.cuda`` implement every name with the same arguments, and
``tests/test_structure.py`` compares their signatures). Arrays are the backend's own
(NumPy on the CPU, Numba device arrays on the GPU); every array argument of a core is 5-D
``(N, C, D, H, W)`` (1-D and 2-D calls use unit axes) unless said otherwise:

- data: ``wrap(a, name, func)`` (user data -> backend array, dtype checked),
  ``asarray(a, dtype)`` (C-contiguous, ``dtype``), ``empty(shape, dtype)``,
  ``zeros(shape, dtype)``, ``finish(out, like)`` (a result in the caller's array type);
- padding: ``pad(x, pads, mode, fill=0.0)`` (three (before, after) pairs; the modes of
  ``fastconv._validate.NUMPY_PAD_MODES``), ``unpad(gp, pads, mode)`` (its adjoint);
- correlation: ``correlate(xp, w, bias, out, stride, dilation, groups)`` (the direct
  kernel on a padded input; the other algorithms' cores come from
  ``fastconv._algorithms``), ``correlate_input(g, w, bias, out, spread_shape,
  spread_src, spread_dst, dilation, groups, pads, mode, algorithm="auto")``,
  ``correlate_weight(xp, g, gw, stride, dilation, groups, algorithm="auto", pads=None)``
  (with ``pads``, ``xp`` is the unpadded input and the padding is zeros),
  ``sum_channels(g3, out)``;
- pooling: ``max_pool(x, out, indices, kernel, stride, pads, dilation)``,
  ``avg_pool(x, out, kernel, stride, pads, divisors)``, ``max_pool_backward(g, x, gx,
  kernel, stride, pads, dilation)``, ``avg_pool_backward(g, gx, kernel, stride, pads,
  divisors)``, ``adaptive_avg_pool(x, out, windows)``, ``adaptive_max_pool(x, out,
  indices, windows)``, ``adaptive_avg_pool_backward(g, gx, windows)``,
  ``adaptive_max_pool_backward(g, x, gx, windows)``, ``max_unpool(x, indices, out)``,
  ``max_unpool_backward(g, indices, gx)``;
- Lp pooling: ``power(x, p, out)``, ``lp_finish(a, scale, p)``, ``lp_grad_out(g, a,
  scale, p, out)``, ``lp_grad_in(gp, x, p, out)``, ``signed_abs(x, s, out)``,
  ``mul_sign(g, x, out)``;
- columns: ``unfold(x, cols, stride, padding, dilation)``, ``fold(cols, out, stride,
  padding, dilation)`` (4-D ``(N, C, H, W)`` and 6-D columns).

Cores write into ``out`` (and return it where noted); ``algorithm=`` takes the values of
``fastconv._algorithms`` for the op (on the GPU every value runs the direct kernel).
"""

#: Backend modules already imported, by name (``backend`` runs on every call).
_BACKENDS: dict = {}


def is_cuda_array(a) -> bool:
    """Device data: ``__cuda_array_interface__``, or a Numba (simulator) device array."""
    if type(a) is np.ndarray:  # the common case, without the attribute look-ups
        return False
    if hasattr(a, "__cuda_array_interface__"):
        return True
    return bool(getattr(type(a), "__cuda_ndarray__", False))


def cuda_available() -> bool:
    """True when Numba's CUDA target finds a usable GPU (or the simulator is on)."""
    try:
        from numba import cuda
    except Exception:  # pragma: no cover - numba without its CUDA target
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - broken driver
        return False


def devices() -> list[str]:
    """The devices usable now: always ``"cpu"``, plus ``"cuda"`` when a GPU is usable.

    >>> "cpu" in devices()
    True
    """
    return ["cpu", "cuda"] if cuda_available() else ["cpu"]


def choose(func: str, device, *arrays) -> str:
    """The backend name for a call: ``device`` if given, else the data's, else the env."""
    if device is None:
        for a in arrays:
            if a is not None and is_cuda_array(a):
                device = "cuda"
                break
        else:
            device = env_device() or "cpu"
    if device not in DEVICES:
        raise ValueError(f"{func}: invalid device {device!r}, should be one of {DEVICES}")
    if device == "cuda" and not cuda_available():
        raise RuntimeError(
            f"{func}: device='cuda' requested but no usable CUDA GPU was found "
            "(check the NVIDIA driver and `pip install fastconv[cuda]`); use device='cpu'"
        )
    return device


def backend(name: str):
    """The backend module ``fastconv.cpu`` or ``fastconv.cuda`` (imported on first use)."""
    be = _BACKENDS.get(name)
    if be is None:
        be = _BACKENDS[name] = importlib.import_module(f"fastconv.{name}")
    return be


def to_host(a):
    """A device array copied to a NumPy array; anything else as it is."""
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


def flip_weight(w5, dtype, asarray):
    """The 5-D weight flipped on every spatial axis (true convolution), made contiguous
    by the backend's ``asarray``."""
    return asarray(w5[:, :, ::-1, ::-1, ::-1], dtype)
