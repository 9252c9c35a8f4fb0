"""The chain's parts on their own: the fair queue, the per-minute limit, the breaker, the
configuration from the environment, and the crop to a key's ratio."""

from __future__ import annotations

import asyncio
import time

import pytest

from promptpix.gateway.config import Config
from promptpix.generators.chain import ConfigError, Limits, build_chain
from promptpix.generators.fit import crop_to_ratio
from promptpix.generators.governor import Breaker, FairLimiter, QueueFull, RateLimiter
from promptpix.generators.imagen import NATIVE_SIZES as IMAGEN
from promptpix.generators.openai import NATIVE_SIZES as OPENAI
from promptpix.generators.ratios import nearest_native as nearest
from promptpix.transforms.source import decode
from tests.generator_fakes import png

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


async def test_limits_from_the_environment() -> None:
    env = {
        "PROMPTPIX_GEMINI_CONCURRENCY": "2",
        "PROMPTPIX_GEMINI_RPM": "15",
        "PROMPTPIX_GEMINI_TIMEOUT_S": "7.5",
        "GEMINI_API_KEY": "k",
    }
    limits = Limits.from_env("gemini", env)
    assert (limits.concurrency, limits.rpm, limits.timeout_s) == (2, 15, 7.5)
    with pytest.raises(ConfigError):
        Limits.from_env("gemini", {"PROMPTPIX_GEMINI_RPM": "lots"})
    with pytest.raises(ConfigError):
        Limits.from_env("gemini", {"PROMPTPIX_GEMINI_CONCURRENCY": "0"})
    chain = build_chain(["gemini", "local"], env=env)
    assert chain.ids == ["gemini", "local"]
    described = chain.describe()["generators"][0]
    assert described["limits"]["concurrency"] == 2 and described["limits"]["rpm"] == 15
    await chain.close()
    with pytest.raises(ConfigError, match="unknown generator"):
        build_chain(["dalle"], env={})
    with pytest.raises(ValueError, match="GEMINI_API_KEY"):
        build_chain(["gemini"], env={})


async def test_the_default_chain_depends_on_the_gemini_key() -> None:
    assert Config.from_env({}).generators == ("local",)
    assert Config.from_env({"GEMINI_API_KEY": "k"}).generators == ("gemini", "local")
    both = {"GEMINI_API_KEY": "k", "PROMPTPIX_GENERATORS": "openai,local"}
    assert Config.from_env(both).generators == ("openai", "local")


async def test_nearest_native_ratio_in_log_scale() -> None:
    assert nearest((21, 9), IMAGEN) == (16, 9)
    assert nearest((2, 3), IMAGEN) == (3, 4)
    assert nearest((4, 5), IMAGEN) == (3, 4)
    assert nearest((5, 4), IMAGEN) == (4, 3)
    assert nearest((16, 9), OPENAI) == (3, 2)
    assert nearest((9, 16), OPENAI) == (2, 3)
    assert nearest((4, 3), OPENAI) == (3, 2)
    assert nearest((1, 1), OPENAI) == (1, 1)


async def test_the_crop_keeps_the_focal_point() -> None:
    data = png(300, 200)  # the bright disc sits at (2/3, 1/3)
    out, ctype, details = crop_to_ratio(data, "image/png", (1, 1), 50_000_000)
    src = decode(out, 50_000_000)
    assert (src.width, src.height) == (200, 200) and ctype == "image/png"
    left = details["crop_offset"][0]  # type: ignore[index]
    assert 75 <= left <= 100  # moved right, towards the disc (centred would be 50)
    same, _, none = crop_to_ratio(data, "image/png", (3, 2), 50_000_000)
    assert same == data and none == {}
