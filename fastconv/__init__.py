"""fastconv: fast, correct convolution and pooling for NumPy arrays (CPU via Numba,
NVIDIA GPU via numba.cuda). ``import fastconv as fc``."""

from fastconv._dispatch import devices
from fastconv._shapes import output_shape, receptive_field
from fastconv.conv import conv1d, conv2d, conv3d, convolve1d, convolve3d, corr2d

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "conv1d",
    "conv2d",
    "conv3d",
    "convolve1d",
    "convolve3d",
    "corr2d",
    "devices",
    "output_shape",
    "receptive_field",
]
