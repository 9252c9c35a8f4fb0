"""Pure size arithmetic: output boxes for each `fit`, and crop boxes around an anchor point."""

from __future__ import annotations

ANCHOR_POINTS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top": (0.5, 0.0),
    "bottom": (0.5, 1.0),
    "left": (0.0, 0.5),
    "right": (1.0, 0.5),
}


def box_size(
    src_w: int, src_h: int, width: int | None, height: int | None, fit: str, limit: int
) -> tuple[int, int]:
    """The box asked for, in pixels; one side alone keeps the source's aspect ratio."""
    if width is not None and height is not None:
        return width, height
    if width is None and height is None:
        return src_w, src_h
    if width is not None:
        w, h = float(width), width * src_h / src_w
    else:
        assert height is not None
        w, h = height * src_w / src_h, float(height)
    scale = min(1.0, limit / max(w, h))
    return max(1, round(w * scale)), max(1, round(h * scale))


def fit_size(src_w: int, src_h: int, box_w: int, box_h: int, fit: str) -> tuple[int, int]:
    """The size the image itself is scaled to (before any padding)."""
    if fit in ("cover", "fill"):
        return box_w, box_h
    scale = min(box_w / src_w, box_h / src_h)
    if fit == "inside":
        scale = min(scale, 1.0)
    return max(1, round(src_w * scale)), max(1, round(src_h * scale))


def crop_box(
    src_w: int, src_h: int, ratio_w: float, ratio_h: float, point: tuple[float, float]
) -> tuple[int, int, int, int]:
    """The largest box of ratio `ratio_w:ratio_h` inside the source, centred on `point`
    as far as the edges allow; answers (left, top, width, height)."""
    if src_w * ratio_h > src_h * ratio_w:  # source is wider: keep the full height
        crop_h = src_h
        crop_w = max(1, min(src_w, round(src_h * ratio_w / ratio_h)))
    else:
        crop_w = src_w
        crop_h = max(1, min(src_h, round(src_w * ratio_h / ratio_w)))
    left = round(point[0] * src_w - crop_w / 2)
    top = round(point[1] * src_h - crop_h / 2)
    left = min(max(left, 0), src_w - crop_w)
    top = min(max(top, 0), src_h - crop_h)
    return left, top, crop_w, crop_h
