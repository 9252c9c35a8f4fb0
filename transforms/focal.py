"""The focal point of an original, found once when it is stored.

Saliency in the manner of libvips' `attention` smartcrop: the image is reduced to a 32x32
grid, then edges on lightness, skin tones and strongly saturated colour are summed,
blurred, and the peak taken. Computed with numpy: a fraction of a millisecond, where the
chain of libvips operations costs several.
"""

from __future__ import annotations

import functools

import numpy as np

from .source import Source

ANALYSIS_SIZE = 256  # originals are decoded at least this large (long side) for analysis
GRID = 32  # the saliency maps' size: the precision of the answer
SKIN_A, SKIN_B = (3.0, 22.0), (4.0, 31.0)  # Lab a and b ranges of skin tones
_XYZ = np.array(
    [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]],
    dtype=np.float32,
)
_WHITE = np.array([0.95047, 1.0, 1.08883], dtype=np.float32)


def find_focal_point(source: Source) -> tuple[float, float]:
    """The most salient spot as fractions (x, y) of the width and height."""
    lab = _lab(_grid_rgb(source))
    light, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    skin = (SKIN_A[0] <= a) & (a <= SKIN_A[1]) & (SKIN_B[0] <= b) & (b <= SKIN_B[1])
    skin &= light >= 15.0
    saturated = np.hypot(a, b) > 60.0
    score = _sobel(light) + 255.0 * skin + 255.0 * saturated
    # Blur over about the size of a crop a third of the image wide and high.
    blurred = _blur(score, sigma=max(1.0, float(np.hypot(GRID / 3, GRID / 3)) / 10))
    gy, gx = np.unravel_index(int(np.argmax(blurred)), blurred.shape)
    x, y = (gx + 0.5) / blurred.shape[1], (gy + 0.5) / blurred.shape[0]
    return round(float(x), 4), round(float(y), 4)


def _grid_rgb(source: Source) -> np.ndarray:
    """RGB as float in 0..1, alpha flattened on white, averaged onto the GRID x GRID grid."""
    px = np.frombuffer(source.pixels, dtype=np.uint8).reshape(
        source.height, source.width, source.bands
    )
    img = _pool(px, GRID) / 255.0
    if source.bands == 4:
        alpha = img[..., 3:4]
        img = img[..., :3] * alpha + (1.0 - alpha)
    return img[..., :3]


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (0..1) to CIE Lab, D65."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = (lin @ _XYZ.T) / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return np.stack(
        (
            116.0 * f[..., 1] - 16.0,
            500.0 * (f[..., 0] - f[..., 1]),
            200.0 * (f[..., 1] - f[..., 2]),
        ),
        axis=-1,
    )


def _sobel(light: np.ndarray) -> np.ndarray:
    p = np.pad(light, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.abs(gx) + np.abs(gy)


def _pool(values: np.ndarray, cells: int) -> np.ndarray:
    """Means over a grid of at most `cells` x `cells` (fewer where the image is smaller):
    cells as `np.array_split` cuts them, a pixel more in the first ones where it must.
    Two matrix products with 0/1 matrices: the sums are exact in float32, and BLAS runs
    them without holding the GIL."""
    h, w, bands = values.shape
    rows, cols = _members(h, min(cells, h)), _members(w, min(cells, w))
    flat = values.reshape(h, w * bands).astype(np.float32)
    by_rows = (rows @ flat).reshape(len(rows), w, bands).transpose(0, 2, 1)  # (r, b, w)
    sums = (by_rows @ cols.T).transpose(0, 2, 1)  # (r, c, b)
    counts = rows.sum(axis=1)[:, None] * cols.sum(axis=1)[None, :]
    return sums / counts[..., None]  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=32)
def _members(n: int, parts: int) -> np.ndarray:
    """The parts x n matrix whose row i is 1 over the i-th of `parts` near-equal runs of n."""
    size, extra = divmod(n, parts)
    lengths = np.full(parts, size)
    lengths[:extra] += 1
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    matrix = np.zeros((parts, n), dtype=np.float32)
    for i, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        matrix[i, start : start + length] = 1.0
    matrix.flags.writeable = False
    return matrix


def _blur(grid: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur, edges extended: one small matrix product per axis."""
    rows, cols = grid.shape
    return _blur_matrix(rows, sigma) @ grid @ _blur_matrix(cols, sigma).T  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=16)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """The n x n matrix that blurs a line of n values, its ends repeated outwards."""
    radius = max(1, int(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((n, n))
    for i in range(n):
        for k, weight in enumerate(kernel):
            matrix[i, min(max(i + k - radius, 0), n - 1)] += weight
    return matrix
