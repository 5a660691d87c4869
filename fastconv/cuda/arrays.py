"""Device arrays for the CUDA backend: wrapping user data (zero-copy for anything with
``__cuda_array_interface__``), casting on the device, allocation, and handing results
back in the caller's array type.
"""

from __future__ import annotations

import numpy as np
from numba import cuda
from numba.core import config

from fastconv._validate import as_array, check_dtype
from fastconv.cuda._launch import grid1, grid3, launch

SIMULATOR = bool(config.ENABLE_CUDASIM)


def is_device_array(a) -> bool:
    """A Numba device array (real or simulated) or any ``__cuda_array_interface__`` object."""
    return bool(getattr(type(a), "__cuda_ndarray__", False)) or hasattr(
        a, "__cuda_array_interface__"
    )


def wrap(a, name: str, func: str):
    """``a`` as a Numba device array with a real numeric dtype.

    Device data (CuPy, PyTorch CUDA tensors, Numba device arrays) is viewed without a
    copy; anything else goes through NumPy (``as_array``) and is copied to the device in
    its own dtype (the cast to the compute dtype happens on the device).
    """
    if getattr(type(a), "__cuda_ndarray__", False):
        arr = a
    elif hasattr(a, "__cuda_array_interface__"):
        arr = cuda.as_cuda_array(a)
        arr._fastconv_source = a  # finish() hands results back in this array type
    else:
        host = as_array(a, name, func)
        arr = cuda.to_device(np.ascontiguousarray(host, dtype=host.dtype.newbyteorder("=")))
    check_dtype(arr, name, func)
    return arr


#: Device copies of small host constants (pooling divisors, adaptive windows) by (device,
#: dtype, values), oldest dropped beyond ``_CONSTANTS_KEPT``: a repeated call on device
#: data makes no host->device copy.
_CONSTANTS: dict = {}
_CONSTANTS_KEPT = 256


def _device_id() -> int:
    try:
        return int(cuda.get_current_device().id)
    except AttributeError:  # the simulator has one device
        return 0


def constant(values, dtype):
    """A 1-D device array of ``values`` (a tuple of numbers), uploaded once per device."""
    key = (_device_id(), np.dtype(dtype).str, tuple(values))
    dev = _CONSTANTS.get(key)
    if dev is None:
        while len(_CONSTANTS) >= _CONSTANTS_KEPT:
            del _CONSTANTS[next(iter(_CONSTANTS))]
        dev = _CONSTANTS[key] = cuda.to_device(np.array(values, dtype=dtype))
    return dev


def empty(shape, dtype):
    return cuda.device_array(tuple(shape), dtype=np.dtype(dtype))


@cuda.jit
def _fill(flat, value):
    i = cuda.grid(1)
    if i < flat.shape[0]:
        flat[i] = value


def zeros(shape, dtype):
    out = empty(shape, dtype)
    if out.size:
        blocks, tpb = grid1(out.size)
        launch(_fill, blocks, tpb, out.reshape(out.size), out.dtype.type(0))
    return out


def expand5(a):
    """A 5-D view of a 1-D..5-D device array (leading unit axes), any strides kept."""
    k = 5 - len(a.shape)
    if k == 0:
        return a
    if a.is_c_contiguous():
        return a.reshape((1,) * k + tuple(a.shape))
    if SIMULATOR:
        return a[(None,) * k]
    desc = dict(a.__cuda_array_interface__)
    strides = desc.get("strides") or tuple(a.strides)
    desc["shape"] = (1,) * k + tuple(desc["shape"])
    desc["strides"] = (0,) * k + tuple(strides)
    return cuda.from_cuda_array_interface(desc, owner=a, sync=False)


@cuda.jit(device=True)
def plane(z, C, D):
    """Grid slice ``z = (n*C + c)*D + d`` of a 5-D kernel's z loop as ``(n, c, d)``."""
    return z // (D * C), (z // D) % C, z % D


@cuda.jit
def _cast5(src, dst):
    """dst[n, c, d, h, w] = src[n, c, d, h, w] (src: any dtype and strides)."""
    w, h = cuda.grid(2)
    C, D, H, W = dst.shape[1], dst.shape[2], dst.shape[3], dst.shape[4]
    if w >= W or h >= H:
        return
    z = cuda.blockIdx.z
    while z < dst.shape[0] * C * D:
        n, c, d = plane(z, C, D)
        dst[n, c, d, h, w] = src[n, c, d, h, w]
        z += cuda.gridDim.z


def copy_into(dst, src) -> None:
    """dst[...] = src (device arrays of one shape, any strides and dtypes)."""
    if dst.size:
        src5, dst5 = expand5(src), expand5(dst)
        blocks, tpb = grid3(dst5.shape[4], dst5.shape[3],
                            dst5.shape[0] * dst5.shape[1] * dst5.shape[2])
        launch(_cast5, blocks, tpb, src5, dst5)


def asarray(a, dtype):
    """A C-contiguous device array of ``dtype``: ``a`` itself when it already is one,
    else a copy made on the device (casts and negative strides never go through the host).
    """
    dtype = np.dtype(dtype)
    if not is_device_array(a):
        a = cuda.to_device(np.ascontiguousarray(a, dtype=dtype))
    if not getattr(type(a), "__cuda_ndarray__", False):
        a = cuda.as_cuda_array(a)
    if a.dtype == dtype and a.is_c_contiguous():
        return a
    out = empty(a.shape, dtype)
    copy_into(out, a)
    return out


def finish(out, like):
    """The result in the caller's array type: CuPy in -> CuPy out (``cupy.asarray``, no
    copy); anything else (Numba device arrays, PyTorch CUDA tensors, NumPy) gets the Numba
    device array, which ``torch.as_tensor(out, device="cuda")`` takes without a copy.
    NumPy callers are copied back to the host by the public wrapper.
    """
    like = getattr(like, "_fastconv_source", like)
    if type(like).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy.asarray(out)
    return out
