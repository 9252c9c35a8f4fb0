"""The chain's parts on their own: the fair queue, the per-minute limit, the breaker, the
nearest native ratio, and the chain's own check of every answer."""

from __future__ import annotations

import asyncio
import time

import pytest

from promptpix.generators.base import AllGeneratorsFailed, GenerationRequest
from promptpix.generators.chain import Chain
from promptpix.generators.gemini import GeminiGenerator
from promptpix.generators.governor import Breaker, FairLimiter, QueueFull, RateLimiter
from promptpix.generators.imagen import NATIVE_SIZES as IMAGEN
from promptpix.generators.local import LocalGenerator
from promptpix.generators.openai import NATIVE_SIZES as OPENAI
from promptpix.generators.ratios import NATIVE_SIZES, native_for
from promptpix.generators.ratios import nearest_native as nearest
from promptpix.generators.settings import GeminiSettings
from promptpix.transforms.source import decode
from tests.generator_fakes import (
    GEMINI_SIZES,
    OPEN,
    FakeServer,
    close_chains,  # noqa: F401 (an autouse fixture)
    gemini_ok,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = FairLimiter(2, max_queue=100)
    order: list[int] = []

    async def worker(i: int) -> None:
        await limiter.acquire()
        order.append(i)
        await asyncio.sleep(0.01)
        limiter.release()

    tasks = []
    for i in range(20):
        tasks.append(asyncio.create_task(worker(i)))
        await asyncio.sleep(0)  # each arrives before the next
    await asyncio.gather(*tasks)
    assert order == list(range(20))
    assert limiter.active == 0 and limiter.queued == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    limiter = FairLimiter(1, max_queue=100)
    await limiter.acquire()
    gone = asyncio.create_task(limiter.acquire())
    staying = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    limiter.release()
    await asyncio.wait_for(staying, 1)
    limiter.release()
    assert limiter.active == 0


async def test_a_full_queue_turns_callers_away() -> None:
    limiter = FairLimiter(1, max_queue=1)
    await limiter.acquire()
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    with pytest.raises(QueueFull):
        await limiter.acquire()
    limiter.release()
    await waiting
    limiter.release()


async def test_the_rate_limit_spreads_starts_over_the_window() -> None:
    rate = RateLimiter(5, window_s=0.5)
    started = time.monotonic()
    starts = []
    for _ in range(12):
        await rate.wait()
        starts.append(time.monotonic() - started)
    assert starts[4] < 0.1  # the first five at once
    assert starts[5] >= 0.49 and starts[10] >= 0.99  # then five per window
    for i in range(5, 12):  # never more than five in any window
        assert starts[i] - starts[i - 5] >= 0.49


async def test_breaker_states() -> None:
    b = Breaker(failures=3, cooldown_s=0.1)
    for _ in range(2):
        b.failure()
    assert b.current() == "closed" and b.allow()
    b.failure()
    assert b.current() == "open" and not b.allow()
    await asyncio.sleep(0.12)
    assert b.current() == "half_open"
    assert b.allow() and not b.allow()  # one probe at a time
    b.failure()
    assert b.current() == "open"
    await asyncio.sleep(0.12)
    assert b.allow()
    b.success()
    assert b.current() == "closed" and b.consecutive == 0


async def test_nearest_native_ratio_in_log_scale() -> None:
    assert nearest((21, 9), IMAGEN) == (16, 9)
    assert nearest((2, 3), IMAGEN) == (3, 4)
    assert nearest((4, 5), IMAGEN) == (3, 4)
    assert nearest((5, 4), IMAGEN) == (4, 3)
    assert nearest((16, 9), OPENAI) == (3, 2)
    assert nearest((9, 16), OPENAI) == (2, 3)
    assert nearest((4, 3), OPENAI) == (3, 2)
    assert nearest((1, 1), OPENAI) == (1, 1)


async def test_native_for_answers_the_generators_own_ratio_and_size() -> None:
    assert native_for((21, 9), IMAGEN) == ((16, 9), IMAGEN[(16, 9)])
    assert native_for((21, 9), None) == ((21, 9), NATIVE_SIZES[(21, 9)])
    assert native_for((4, 5), OPENAI) == ((2, 3), (1024, 1536))


def request(ratio: tuple[int, int], prompt: str = "a red fox") -> GenerationRequest:
    key = f"{abs(hash((prompt, ratio))):016x}" * 4
    return GenerationRequest(key=key, prompt=prompt, ratio=ratio, size=NATIVE_SIZES[ratio])


async def test_the_result_says_the_ratio_the_image_was_made_at() -> None:
    chain = Chain([LocalGenerator()])
    OPEN.append(chain)
    for ratio in ((21, 9), (1, 1), (9, 16)):
        result = await chain.generate(request(ratio))
        assert result.ratio == ratio and result.attempted == ("local",)
        src = decode(result.image.data, 50_000_000)
        assert (src.width, src.height) == NATIVE_SIZES[ratio]
        assert not result.fallback_used and set(result.timings) == {"local"}


async def test_an_answer_over_the_pixel_budget_falls_to_the_next_generator() -> None:
    # local draws 1344x768 for 16:9; the fake Gemini answers 168x96. Only the second fits.
    with FakeServer(gemini_ok) as server:
        gemini = GeminiGenerator(GeminiSettings(api_key="k", base_url=server.url))
        chain = Chain([LocalGenerator(), gemini], max_pixels=20_000)
        OPEN.append(chain)
        result = await chain.generate(request((16, 9)))
    assert result.attempted == ("local", "gemini") and result.fallback_used
    assert result.image.generator == "gemini" and result.ratio == (16, 9)
    src = decode(result.image.data, 50_000_000)
    assert (src.width, src.height) == GEMINI_SIZES["16:9"]
    stats = chain.stats["local"]
    assert stats.failures == 1 and "not a usable image" in stats.last_error
    assert "20000" in stats.last_error  # the budget it was over


async def test_an_answer_that_is_not_an_image_fails_the_chain_when_none_is_left() -> None:
    chain = Chain([LocalGenerator()], max_pixels=1000)
    OPEN.append(chain)
    with pytest.raises(AllGeneratorsFailed, match="answer is not a usable image") as failed:
        await chain.generate(request((1, 1)))
    assert failed.value.attempted == ["local"]
