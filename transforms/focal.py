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
    return np.asarray(np.abs(gx) + np.abs(gy))


def _pool(values: np.ndarray, cells: int) -> np.ndarray:
    """Means over a grid of at most `cells` x `cells` (fewer where the image is smaller):
    cells as `np.array_split` cuts them, a pixel more in the first ones where it must.
    Rows, then columns, are summed as whole slices added in uint32: exact, and a third of
    the time of two float matrix products (about 80 us for 256 x 256 RGB)."""
    h, w, bands = values.shape
    rows = _run_sums(values.reshape(h, 1, w * bands), min(cells, h))  # (r, 1, w * bands)
    by_cols = rows.reshape(len(rows), w, bands).transpose(1, 0, 2)  # (w, r, b)
    sums = _run_sums(by_cols, min(cells, w)).transpose(1, 0, 2)  # (r, c, b)
    return np.asarray(sums / _counts(h, w, cells)[..., None], dtype=np.float32)


def _runs(n: int, parts: int) -> tuple[tuple[int, int], ...]:
    """(length, how many) of the near-equal runs `np.array_split` cuts n into."""
    size, extra = divmod(n, parts)
    return ((size + 1, extra), (size, parts - extra))


def _run_sums(values: np.ndarray, parts: int) -> np.ndarray:
    """Sums over the runs of the first axis, each run one slice added at a time."""
    out = []
    start = 0
    for length, count in _runs(len(values), parts):
        if not count:
            continue
        block = values[start : start + length * count].reshape(count, length, *values.shape[1:])
        total = block[:, 0].astype(np.uint32)
        for i in range(1, length):
            total += block[:, i]
        out.append(total)
        start += length * count
    return out[0] if len(out) == 1 else np.concatenate(out)


@functools.lru_cache(maxsize=32)
def _counts(h: int, w: int, cells: int) -> np.ndarray:
    """Pixels in each cell of the grid `_pool` makes of an h x w image."""
    rows = np.concatenate([np.full(count, n) for n, count in _runs(h, min(cells, h))])
    cols = np.concatenate([np.full(count, n) for n, count in _runs(w, min(cells, w))])
    counts = np.asarray(rows[:, None] * cols[None, :], dtype=np.float32)
    counts.flags.writeable = False
    return counts


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
