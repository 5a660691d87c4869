"""Generate ``docs/scene.png``: a photo-like greyscale test picture (sky gradient, sun,
two mountain ridges, a house with a window and a door, a textured field), seeded.

Then the README's edge picture is made with the command line itself:

    python docs/make_scene.py
    fastconv convolve docs/scene.png -k sobel-x --padding same -o docs/edges.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def scene(h: int = 192, w: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 200 - 70 * yy / h  # sky: bright at the top
    sun = (yy - 40) ** 2 + (xx - 200) ** 2
    img = np.where(sun < 18**2, 250.0, img + 30 * np.exp(-sun / (2 * 40.0**2)))
    far = 95 + 18 * np.sin(xx / 23.0) + 9 * np.sin(xx / 7.0 + 1.0)
    img = np.where(yy > far, 130 - 0.15 * (yy - far), img)  # far ridge
    near = 125 + 14 * np.sin(xx / 41.0 + 2.0)
    img = np.where(yy > near, 85 + 25 * rng.random((h, w)) * (yy > near), img)  # field
    house = (yy > 112) & (yy < 160) & (xx > 40) & (xx < 110)
    img = np.where(house, 175.0, img)
    roof = (yy <= 112) & (yy > 112 - (35 - np.abs(xx - 75))) & (np.abs(xx - 75) < 38)
    img = np.where(roof, 60.0, img)
    img = np.where((yy > 122) & (yy < 140) & (xx > 52) & (xx < 70), 40.0, img)  # window
    img = np.where((yy > 130) & (yy < 160) & (xx > 84) & (xx < 98), 70.0, img)  # door
    img += rng.normal(0, 1.5, size=img.shape)  # sensor noise
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


if __name__ == "__main__":
    out = Path(__file__).with_name("scene.png")
    Image.fromarray(scene(), mode="L").save(out)
    print(f"wrote {out}")
