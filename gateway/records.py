"""What is recorded of an image: a stored original's metadata, and the index's rows for
originals, variants and generations."""

from __future__ import annotations

import time
from typing import Any

from promptpix.cache.index import Row
from promptpix.generators.chain import ChainResult
from promptpix.generators.prompts import PreparedPrompt
from promptpix.generators.ratios import ratio_text
from promptpix.generators.vision import Analysis
from promptpix.transforms.params import TransformParams

from .params import GenerationParams


def original_meta(
    key: str,
    gen: GenerationParams,
    prompt: PreparedPrompt,
    result: ChainResult,
    *,
    stored: bytes,
    content_type: str,
    size: tuple[int, int],
    focal: tuple[float, float],
    crop: dict[str, Any],
    vision: Analysis | None,
    generated_ms: float,
) -> dict[str, Any]:
    """The metadata stored with a new original (`stored`: its bytes, at the key's ratio,
    which `crop` says how they were cut from the generator's); the index's rows are made
    from it."""
    image = result.image
    return {
        "key": key,
        "project": gen.project,
        "prompt": gen.prompt,
        "prompt_sent": prompt.sent,
        "prompt_compacted": prompt.compacted,
        "prompt_work": {
            "optimizer": prompt.optimizer,
            "enhancer": prompt.enhancer,
            "fallbacks": dict(prompt.fallbacks),
            "timings_ms": dict(prompt.timings_ms),
        },
        "params": {
            "ar": ratio_text(gen.ratio),
            "style": gen.style,
            "neg": gen.neg,
            "seed": gen.seed,
            "enhance": gen.enhance,
            "model": gen.model,
            "style_version": gen.style_version,
        },
        "native_ratio": list(gen.ratio),
        "generator": image.generator,
        "model": image.model,
        "generators_attempted": list(result.attempted),
        "fallback_used": result.fallback_used,
        "content_type": content_type,
        "width": size[0],
        "height": size[1],
        "bytes": len(stored),
        "focal_point": {"x": focal[0], "y": focal[1]},
        "focal_source": vision.source if vision and vision.focal else "saliency",
        "alt_text": vision.alt_text if vision else "",
        "tags": list(vision.tags) if vision else [],
        "timings_ms": {"generate": round(generated_ms, 1)},
        "generator_timings_ms": dict(result.timings),
        "generator_details": {**image.details, **crop},
        "created_at": time.time(),
    }


def generation_row(
    key: str,
    project: str,
    generator: str,
    outcome: str,
    attempted: list[str],
    timings: dict[str, float],
    error: str | None,
) -> Row:
    return Row(
        "generations",
        {
            "original_key": key,
            "project": project,
            "generator": generator,
            "outcome": outcome,
            "attempted": attempted,
            "fallback_used": len(attempted) > 1,
            "timings": timings,
            "error": error,
            "created_at": time.time(),
        },
    )


def variant_row(
    key: str,
    original_key: str,
    t: TransformParams,
    content_type: str,
    size: tuple[int, int],
    n: int,
) -> Row:
    return Row(
        "variants",
        {
            "key": key,
            "original_key": original_key,
            "params": transform_summary(t),
            "content_type": content_type,
            "width": size[0],
            "height": size[1],
            "bytes": n,
            "created_at": time.time(),
        },
    )


def transform_summary(t: TransformParams) -> dict[str, Any]:
    return {
        "ar": ratio_text(t.view),
        "w": t.width,
        "h": t.height,
        "fit": t.fit,
        "anchor": t.anchor if isinstance(t.anchor, str) else list(t.anchor),
        "fmt": t.fmt,
        "q": t.quality,
        "rmbg": t.rmbg,
        "blur": t.blur,
        "bg": None if not t.bg_given else ("transparent" if t.bg is None else list(t.bg)),
    }
