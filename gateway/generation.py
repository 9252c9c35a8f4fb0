"""A new original: prompt work, the generator chain, the crop to the key's ratio and the
analysis, on the bounded transform pool. Nothing here stores anything."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from promptpix.cache.index import IndexWriter
from promptpix.generators.base import AllGeneratorsFailed, GenerationRequest, Refused
from promptpix.generators.chain import Chain
from promptpix.generators.llm import TextLLM
from promptpix.generators.prompts import prepare
from promptpix.generators.ratios import NATIVE_SIZES, ratio_text
from promptpix.generators.styles import is_transparent
from promptpix.generators.vision import Analysis, GeminiVision
from promptpix.transforms.analysis import Analysed, analyse
from promptpix.transforms.crop import crop_to_ratio
from promptpix.transforms.errors import TransformError
from promptpix.transforms.executor import TransformPool

from .errors import ReferencesUnsupported
from .metrics import Metrics
from .params import GenerationParams
from .records import generation_row, original_meta
from .spending import Charge

log = logging.getLogger("promptpix.generation")


@dataclass(frozen=True, slots=True)
class Terms:
    """What a project allows the generation of a request's original."""

    charge: Charge | None = None  # counted against its limits (None: not counted)
    among: tuple[str, ...] | None = None  # its generators, in order (None: the whole chain)
    stand_in: bool = True  # the offline placeholder may answer for generators that failed
    system_prompt: str = ""  # the project's, put before every prompt it sends


FREE = Terms()
REFERENCE_NOTE = (
    "{n} reference image(s) are attached, in the order the prompt names them (@name): "
    "keep what they show recognisable."
)


@dataclass(frozen=True, slots=True)
class NewOriginal:
    data: bytes  # at the key's ratio
    meta: dict[str, Any]
    analysed: Analysed
    stand_in: bool  # the offline placeholder answered for failed generators: not stored


class Generation:
    def __init__(
        self,
        chain: Chain,
        pool: TransformPool,
        metrics: Metrics,
        index: IndexWriter,
        *,
        max_source_pixels: int,
        llm: TextLLM | None = None,
        vision: GeminiVision | None = None,
    ) -> None:
        self.chain = chain
        self.pool = pool
        self.metrics = metrics
        self.index = index
        self.max_source_pixels = max_source_pixels
        self.llm = llm  # prompt compaction and enhancement; None: deterministic
        self.vision = vision

    def candidates(self, gen: GenerationParams, terms: Terms) -> list[str]:
        """The generators that may answer, in order. With reference images, only those that
        take images; none of them: a 422 before anything is reserved or called."""
        found = self.chain.candidates(gen.model, terms.among, references=bool(gen.references))
        if gen.references and not found:
            raise ReferencesUnsupported(
                "the prompt sends reference images, and no generator this request may use "
                f"takes images ({', '.join(self.chain.candidates(gen.model, terms.among))})",
                param="references",
            )
        return found

    async def generate(
        self,
        gen: GenerationParams,
        key: str,
        timings: dict[str, float],
        terms: Terms = FREE,
        references: tuple[bytes, ...] = (),
    ) -> NewOriginal:
        """`references`: the bytes of `gen.references`, in order."""
        started = time.perf_counter()
        prompt = await prepare(
            gen.prompt,
            style=gen.style,
            negative=gen.neg,
            enhance=gen.enhance,
            takes_negative=self._takes_negative(self.candidates(gen, terms)),
            llm=self.llm,
        )
        if terms.system_prompt:
            prompt = dataclasses.replace(prompt, sent=f"{terms.system_prompt}\n\n{prompt.sent}")
        if references:
            note = REFERENCE_NOTE.format(n=len(references))
            prompt = dataclasses.replace(prompt, sent=f"{prompt.sent}\n\n{note}")
        stage(self.metrics, timings, "prompt", started)
        request = GenerationRequest(
            key=key,
            prompt=prompt.sent,
            ratio=gen.ratio,
            size=NATIVE_SIZES[gen.ratio],
            negative=gen.neg,
            seed=gen.seed,
            style=gen.style,
            references=references,
        )
        started = time.perf_counter()
        try:
            result = await self.chain.generate(
                request, only=gen.model, among=terms.among, stand_in=terms.stand_in
            )
        except Exception as exc:
            outcome = "refused" if isinstance(exc, Refused) else "failure"
            attempted = exc.attempted if isinstance(exc, AllGeneratorsFailed) else []
            self._failed(key, gen, outcome, attempted, str(exc))
            raise
        generated_ms = stage(self.metrics, timings, "generate", started)
        image = result.image
        try:
            data, content_type = image.data, image.content_type
            crop: dict[str, Any] = {}
            if result.ratio != gen.ratio:  # the generator's nearest ratio, cropped to the key's
                started = time.perf_counter()
                data, content_type, crop = await self.pool.run(
                    crop_to_ratio,
                    data,
                    image.content_type,
                    gen.ratio,
                    self.max_source_pixels,
                    unbounded=True,  # paid for: never turned away
                    later=True,
                )
                crop["native_ratio"] = ratio_text(result.ratio)
                stage(self.metrics, timings, "crop", started)
            started = time.perf_counter()
            analysed = await self.pool.run(
                analyse,
                data,
                self.max_source_pixels,
                is_transparent(gen.style),
                unbounded=True,
                later=True,  # answers whose variant is being made leave first
            )
            stage(self.metrics, timings, "analyse", started)
        except TransformError as exc:  # read as an image, but its pixels do not decode
            reason = f"{image.generator}: the answer could not be decoded ({exc})"
            self._failed(key, gen, "failure", list(result.attempted), reason)
            raise AllGeneratorsFailed(list(result.attempted), [reason]) from exc
        outcome = "placeholder" if result.stand_in else "success"
        self.metrics.generations.inc(image.generator, outcome)
        vision = await self._vision(data, content_type, timings)
        focal = analysed.focal
        if vision is not None and vision.focal is not None:
            focal = vision.focal
        meta = original_meta(
            key,
            gen,
            prompt,
            result,
            stored=data,
            content_type=content_type,
            size=(analysed.header.width, analysed.header.height),
            focal=focal,
            crop=crop,
            vision=vision,
            generated_ms=generated_ms,
        )
        return NewOriginal(data, meta, analysed, result.stand_in)

    def _failed(
        self, key: str, gen: GenerationParams, outcome: str, attempted: list[str], error: str
    ) -> None:
        self.metrics.generations.inc(gen.model or "chain", outcome)
        self.index.add(generation_row(key, gen.project, "", outcome, attempted, {}, error[:500]))

    def _takes_negative(self, ids: list[str]) -> bool:
        """Whether every generator that may answer takes a negative prompt of its own."""
        candidates = [g for g in self.chain.generators if g.id in ids]
        return bool(candidates) and all(getattr(g, "takes_negative", False) for g in candidates)

    async def _vision(
        self, data: bytes, content_type: str, timings: dict[str, float]
    ) -> Analysis | None:
        """The vision model's focal point, alt text and tags, when one is configured."""
        if self.vision is None:
            return None
        started = time.perf_counter()
        found = await self.vision.analyse(data, content_type)
        stage(self.metrics, timings, "vision", started)
        return found


def stage(metrics: Metrics, timings: dict[str, float], name: str, started: float) -> float:
    """Record how long a stage took since `started`, for `Server-Timing` and the metrics."""
    ms = (time.perf_counter() - started) * 1000
    timings[name] = ms
    metrics.stage_ms.observe(ms, name)
    return ms
