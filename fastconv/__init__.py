"""fastconv: fast, correct convolution and pooling for NumPy arrays (CPU via Numba,
NVIDIA GPU via numba.cuda). ``import fastconv as fc``."""

from fastconv import grad, kernels
from fastconv._dispatch import devices
from fastconv._shapes import output_shape, receptive_field
from fastconv.conv import (
    conv1d,
    conv2d,
    conv3d,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    convolve1d,
    convolve2d,
    convolve3d,
    corr2d,
    correlate2d,
)
from fastconv.pool import avg_pool1d, avg_pool2d, avg_pool3d, max_pool1d, max_pool2d, max_pool3d

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "convolve1d",
    "convolve2d",
    "convolve3d",
    "corr2d",
    "correlate2d",
    "devices",
    "grad",
    "kernels",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "output_shape",
    "receptive_field",
]
