"""The one source every server transforms: a detailed, photo-like 1344x768 JPEG.

Noise summed over octaves gives each channel structure at every scale (like foliage or rock), a
gradient gives it light, and fine grain gives the encoder real work, unlike flat art.
"""

from __future__ import annotations

from pathlib import Path

import pyvips

WIDTH, HEIGHT = 1344, 768


def _normalised(img: pyvips.Image) -> pyvips.Image:
    lo, hi = img.min(), img.max()
    return (img - lo) * (255.0 / max(hi - lo, 1e-6))


def _texture(seed: int) -> pyvips.Image:
    """Noise at every scale, coarse octaves strongest: a fractal-like surface."""
    total = None
    for octave in range(8):
        step = 2 ** (7 - octave)  # 128 px cells down to single pixels
        w, h = -(-WIDTH // step) + 1, -(-HEIGHT // step) + 1
        noise = pyvips.Image.gaussnoise(w, h, sigma=1.0, mean=0, seed=seed * 31 + octave)
        layer = noise.resize(step, kernel="linear").crop(0, 0, WIDTH, HEIGHT) * (0.62**octave)
        total = layer if total is None else total + layer
    assert total is not None
    return _normalised(total)


def make_source(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    channels = [_texture(seed) for seed in (1, 2, 3)]
    img = channels[0].bandjoin(channels[1:])
    light = pyvips.Image.xyz(WIDTH, HEIGHT)[0] * (120.0 / WIDTH) - 40  # left dark, right bright
    grain = pyvips.Image.gaussnoise(WIDTH, HEIGHT, sigma=18, mean=0)
    img = (img * 0.75 + light + grain).cast("uchar").copy(interpretation="srgb")
    data = bytes(img.jpegsave_buffer(Q=92, keep="none"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data
