"""fastconv: fast, correct convolution and pooling for NumPy arrays (CPU via Numba,
NVIDIA GPU via numba.cuda). ``import fastconv as fc``."""

from fastconv import grad, kernels, ndimage, signal
from fastconv._dispatch import devices
from fastconv._explain import explain
from fastconv._shapes import output_shape, receptive_field
from fastconv._warmup import warmup
from fastconv.adaptive import (
    adaptive_avg_pool1d,
    adaptive_avg_pool2d,
    adaptive_avg_pool3d,
    adaptive_max_pool1d,
    adaptive_max_pool2d,
    adaptive_max_pool3d,
    lp_pool1d,
    lp_pool2d,
    lp_pool3d,
)
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
from fastconv.fold import fold, unfold
from fastconv.layers import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Conv3d,
    MaxPool2d,
    MaxUnpool2d,
)
from fastconv.learn import LearnResult, learn_kernel
from fastconv.pool import avg_pool1d, avg_pool2d, avg_pool3d, max_pool1d, max_pool2d, max_pool3d
from fastconv.separable import sep_conv2d
from fastconv.unpool import max_unpool1d, max_unpool2d, max_unpool3d

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "explain",
    "AvgPool2d",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "LearnResult",
    "MaxPool2d",
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
    "learn_kernel",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "ndimage",
    "output_shape",
    "receptive_field",
    "sep_conv2d",
    "signal",
    "warmup",
]

__all__ += [
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "MaxUnpool2d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "fold",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool3d",
    "max_unpool1d",
    "max_unpool2d",
    "max_unpool3d",
    "unfold",
]
