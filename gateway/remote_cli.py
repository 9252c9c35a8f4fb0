"""`promptpix generate`, `batch` and `warm`: the commands that talk to a running gateway over
HTTP, through the Python client, with progress that reads well in a terminal and in a log.

The gateway is `--url` or `PROMPTPIX_URL` (default http://127.0.0.1:8080); the project key is
read from `PROMPTPIX_API_KEY` only (a key in argv would show in process lists). Exit codes:
0 all done, 1 an image (or a batch line, or a warmed URL) failed, 2 the command could not run
(bad arguments, a file that cannot be read, no key, a refused key, no gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

import httpx

from promptpix.client import (
    AsyncClient,
    Call,
    Client,
    GenerationParams,
    PromptpixError,
    UrlParams,
)

from .progress import Progress, duration

DEFAULT_URL = "http://127.0.0.1:8080"
KEY_VARIABLE = "PROMPTPIX_API_KEY"
POLL_S = 0.5  # how often a warm job's status is read
RETRIES = 2  # a line refused for a short while (rate limit, 504) is sent again this often
MAX_RETRY_WAIT_S = 60.0  # a longer Retry-After (a quota's period end) is not waited for
WARM_CHUNK = 1000  # URLs of one `POST /v1/warm` (the API's limit)
PAGE_TIMEOUT_S = 30.0

Format = Literal["webp", "avif", "jpeg", "png"]
FORMATS: dict[str, Format] = {
    ".webp": "webp",
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".avif": "avif",
}
COMMANDS = ("generate", "batch", "warm")


class Stop(Exception):
    """The command cannot go on: one line for stderr, and the exit code."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# --- arguments --------------------------------------------------------------------------

EXIT_CODES = (
    "exit codes: 0 all done; 1 something failed (listed); 2 the command could not run "
    f"(arguments, files, no gateway, {KEY_VARIABLE} missing or refused)"
)
ENVIRONMENT = (
    f"environment: PROMPTPIX_URL (default {DEFAULT_URL}), {KEY_VARIABLE} (a key of the "
    "project, never given as an argument)"
)


def add_commands(sub: Any) -> None:
    epilog = f"{ENVIRONMENT}; {EXIT_CODES}"
    gen = sub.add_parser(
        "generate",
        help="generate (or find) one image and print its live URL",
        description="Generate (or find) one image on the gateway. Prints the live URL on "
        "stdout and the details on stderr.",
        epilog=epilog,
    )
    gen.add_argument("prompt")
    gen.add_argument("--ar", help="aspect ratio W:H (default the project's, 1:1)")
    gen.add_argument("--style", help="a style preset")
    gen.add_argument("--seed", type=int, help="variation, 0..2147483647")
    gen.add_argument("--neg", help="what to avoid")
    gen.add_argument("--model", help="pin one generator of the chain")
    gen.add_argument("-w", "--width", type=int, help="the printed URL's width (w)")
    gen.add_argument(
        "-o",
        "--output",
        help="write the image here; the format follows the extension (.webp .png .jpg .jpeg .avif)",
    )
    gen.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    _common(gen)

    batch = sub.add_parser(
        "batch",
        help="run a JSON-lines file of generation bodies",
        description="Run FILE's lines, one `POST /v1/generations` body each, a few at a "
        "time. Writes one JSON line per input line, in input order: "
        '{"line": N, "status": 200, "generation": {...}} or '
        '{"line": N, "status": 400, "error": {"code", "message", "param"}}. Blank lines '
        "are skipped; a line that is not a JSON object fails with code invalid_json. A line "
        f"refused with 429 and a Retry-After of at most {MAX_RETRY_WAIT_S:.0f} s (a rate "
        "limit), or with 504 (the generation goes on), is sent again after the wait, up to "
        "--retries times; a used-up quota or budget fails at once.",
        epilog=epilog,
    )
    batch.add_argument("file", help="a .jsonl file, or - for stdin")
    batch.add_argument(
        "-c", "--concurrency", type=int, default=4, help="lines at a time (default 4)"
    )
    batch.add_argument("-o", "--output", help="write the results here instead of stdout")
    batch.add_argument("--retries", type=int, default=RETRIES, help=f"per line, default {RETRIES}")
    _common(batch)

    warm = sub.add_parser(
        "warm",
        help="generate ahead every /i/ image of pages or URLs",
        description="Generate ahead the /i/ images of this project that pages name (in "
        "src, srcset and CSS url(), as POST /v1/warm finds them). Each argument is a local "
        "HTML file, an http(s) page (fetched here, its HTML sent), or an /i/ image URL of the "
        "gateway. Follows the jobs to their end, then prints one JSON line per URL: "
        '{"url", "outcome" (generated, stored, failed, ignored), "source", "error"}.',
        epilog=epilog,
    )
    warm.add_argument("targets", nargs="+", metavar="PAGE.html|URL")
    warm.add_argument(
        "--timeout", type=float, default=1800.0, help="give up following after (s, 1800)"
    )
    _common(warm)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help=f"the gateway (default $PROMPTPIX_URL or {DEFAULT_URL})")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or details")


def remote_command(args: argparse.Namespace) -> int:
    """Run one of COMMANDS; every failure a user can cause ends as one line on stderr."""
    try:
        if args.command == "generate":
            return generate_command(args)
        if args.command == "batch":
            return batch_command(args)
        return warm_command(args)
    except Stop as stop:
        say(stop.message)
        return stop.code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except BrokenPipeError:  # stdout closed early (`| head`): no traceback at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def say(message: str) -> None:
    print(f"promptpix: {message}", file=sys.stderr, flush=True)


def connection(args: argparse.Namespace) -> tuple[str, str]:
    """(gateway URL, key) from the flags and the environment, or Stop."""
    url = (args.url or os.environ.get("PROMPTPIX_URL", "")).strip() or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        where = "--url" if args.url else "PROMPTPIX_URL"
        raise Stop(f"{where}: {url!r} is not the gateway's http:// or https:// URL")
    key = os.environ.get(KEY_VARIABLE, "").strip()
    if not key:
        raise Stop(f"{KEY_VARIABLE} is not set (a key of the project: promptpix keys create)")
    return url, key


def setup_failure(exc: PromptpixError, url: str) -> Stop:
    """A call that tells the command cannot run at all: no gateway, or the key refused."""
    if exc.status == 0:
        return Stop(f"cannot reach the gateway at {url} ({exc.message})")
    if exc.status == 401:
        return Stop(
            f"the gateway refused the key in {KEY_VARIABLE} (401 {exc.code}: {exc.message})"
        )
    if exc.status == 403:
        return Stop(f"the key in {KEY_VARIABLE} may not do this (403 {exc.code}: {exc.message})")
    return Stop(failure_line(exc), code=1)


def failure_line(exc: PromptpixError) -> str:
    where = f" (parameter {exc.param})" if exc.param else ""
    status = f"{exc.status} " if exc.status else ""
    retry = f"; retry in {duration(exc.retry_after)}" if exc.retry_after is not None else ""
    return f"{status}{exc.code}: {exc.message}{where}{retry}"


def check(client: Client, url: str) -> None:
    """One cheap call before the work: a missing gateway or a refused key stops the command
    with one line (exit 2), not with every item failing the same way."""
    try:
        client.list_styles()
    except PromptpixError as exc:
        raise setup_failure(exc, url) from None


def json_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- generate ---------------------------------------------------------------------------


def generate_command(args: argparse.Namespace) -> int:
    url, key = connection(args)
    fmt = output_format(args.output) if args.output else None
    params: GenerationParams = {}
    live: UrlParams = {"prompt": args.prompt}  # the same image's live URL
    if args.ar is not None:
        params["aspect_ratio"] = live["ar"] = args.ar
    if args.style is not None:
        params["style"] = live["style"] = args.style
    if args.neg is not None:
        params["negative_prompt"] = live["neg"] = args.neg
    if args.seed is not None:
        params["seed"] = live["seed"] = args.seed
    if args.model is not None:
        params["model"] = live["model"] = args.model
    if args.width is not None:
        live["w"] = args.width
    if fmt is not None:
        live["fmt"] = fmt
    with Client(url, api_key=key) as client:
        try:
            answer = client.generate(args.prompt, **params)
        except PromptpixError as exc:
            raise setup_failure(exc, url) from None
        try:
            shown = wrote = None
            if "w" in live or "fmt" in live:
                # The answer's live URL has no width or format: one with them is asked for,
                # signed by the gateway when the project signs.
                shown = client.urls(**live)["url"]
                if args.output:
                    data = client.download(shown)
                    Path(args.output).write_bytes(data)
                    wrote = f"wrote {args.output} ({len(data)} bytes)"
        except PromptpixError as exc:
            raise Stop(f"the image was made, but not fetched: {failure_line(exc)}", 1) from None
        except OSError as exc:
            raise Stop(f"cannot write {args.output}: {exc.strerror or exc}", 1) from None
    if args.json:
        print(json_line(answer))
    else:
        print(shown or answer.get("urls", {}).get("live", ""), flush=True)
        if not args.quiet:
            for line in [*details(answer), *([wrote] if wrote else [])]:
                print(line, file=sys.stderr)
    return 0


def output_format(path: str) -> Format:
    """The format a file's extension names; checked before anything is generated."""
    target = Path(path)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        names = ", ".join(FORMATS)
        raise Stop(f"-o {path}: the extension names the image format: one of {names}")
    if not target.parent.is_dir():
        raise Stop(f"-o {path}: no such directory {str(target.parent)!r}")
    return fmt


def details(answer: Mapping[str, Any]) -> Iterator[str]:
    """What a person wants to know beside the URL, for stderr."""
    image = answer.get("image") or {}
    cache = answer.get("cache") or {}
    generator = answer.get("generator") or "?"
    if cache.get("similar"):
        how = "a similar stored image (every generator failed)"
    elif cache.get("generated"):
        how = f"generated by {generator}"
    else:
        how = f"found (already stored, made by {generator})"
    size = f"{image.get('width')}x{image.get('height')} {image.get('content_type', '')}".strip()
    total = (answer.get("timings_ms") or {}).get("total")
    took = f" in {total / 1000:.1f}s" if isinstance(total, int | float) else ""
    yield f"{how}{took}: {size}, id {answer.get('id')}"
    if answer.get("fallback_used"):
        tried = ", ".join(answer.get("generators_attempted") or [])
        yield f"note: a fallback: the generators before {generator} failed (tried {tried})"
    elif generator == "local":
        yield "note: the offline 'local' generator made this: a drawn placeholder, no AI model"


# --- batch ------------------------------------------------------------------------------


@dataclass(slots=True)
class Line:
    number: int
    body: dict[str, Any] | None  # None: not a JSON object
    problem: str = ""


def read_lines(path: str) -> list[Line]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise Stop(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise Stop(f"cannot read {path}: it is not UTF-8 text") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            lines.append(Line(number, None, f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        if not isinstance(body, dict):
            lines.append(
                Line(number, None, f"a JSON object is expected, not {type(body).__name__}")
            )
            continue
        lines.append(Line(number, body))
    return lines


def batch_command(args: argparse.Namespace) -> int:
    if args.concurrency < 1:
        raise Stop("--concurrency must be at least 1")
    if args.retries < 0:
        raise Stop("--retries must be 0 or more")
    url, key = connection(args)
    lines = read_lines(args.file)
    with Client(url, api_key=key) as client:
        check(client, url)
    try:
        out: IO[str] = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    except OSError as exc:
        raise Stop(f"cannot write {args.output}: {exc.strerror or exc}") from None
    try:
        failed = asyncio.run(run_batch(url, key, lines, args, out))
    finally:
        if out is not sys.stdout:
            out.close()
    return 1 if failed else 0


async def run_batch(
    url: str, key: str, lines: list[Line], args: argparse.Namespace, out: IO[str]
) -> int:
    """Every line sent, `concurrency` at a time; the results written in input order as soon
    as the lines before them are done. Answers how many failed."""
    progress = Progress("batch", len(lines), ("done", "failed"), quiet=args.quiet, unit="line")
    ready: dict[int, dict[str, Any]] = {}
    failed: list[int] = []  # line numbers
    written = 0
    gate = asyncio.Semaphore(args.concurrency)
    async with AsyncClient(url, api_key=key) as client:

        async def one(index: int, line: Line) -> None:
            nonlocal written
            async with gate:
                result = await send(client, line, args.retries)
            if result["status"] != 200:
                failed.append(line.number)
            ready[index] = result
            while written in ready:  # what is now in order goes out
                out.write(json_line(ready.pop(written)) + "\n")
                written += 1
            out.flush()
            progress.update(done=written + len(ready) - len(failed), failed=len(failed))

        await asyncio.gather(*(one(i, line) for i, line in enumerate(lines)))
    progress.close()
    if failed:
        shown = ", ".join(map(str, sorted(failed)[:20])) + (", ..." if len(failed) > 20 else "")
        say(f"{len(failed)} of {len(lines)} lines failed (line {shown})")
    return len(failed)


async def send(client: AsyncClient, line: Line, retries: int) -> dict[str, Any]:
    """One line's result: its generation, or its error."""
    if line.body is None:
        error = {"code": "invalid_json", "message": line.problem, "param": None}
        return {"line": line.number, "status": 400, "error": error}
    attempt = 0
    while True:
        try:
            # The body goes as the file gives it: the gateway names what is wrong in it.
            answer = await client.request(Call("POST", "/v1/generations", json=line.body))
        except PromptpixError as exc:
            wait = retry_wait(exc)
            if wait is None or attempt >= retries:
                return {"line": line.number, "status": exc.status, "error": error_of(exc)}
            attempt += 1
            await asyncio.sleep(wait)
        else:
            return {"line": line.number, "status": 200, "generation": answer}


def error_of(exc: PromptpixError) -> dict[str, Any]:
    """The API's error object (and how long to wait, when the gateway said)."""
    error: dict[str, Any] = {"code": exc.code, "message": exc.message, "param": exc.param}
    if exc.retry_after is not None:
        error["retry_after"] = exc.retry_after
    return error


def retry_wait(exc: PromptpixError) -> float | None:
    """Seconds before a line is sent again, or None when its failure is final: a rate
    limit's short Retry-After is waited for; a 504's generation goes on, and the same body
    sent again joins it."""
    if exc.status == 429 and exc.retry_after is not None and exc.retry_after <= MAX_RETRY_WAIT_S:
        return max(exc.retry_after, 0.5)
    if exc.status == 504:
        return 1.0
    return None


# --- warm -------------------------------------------------------------------------------


@dataclass(slots=True)
class Source:
    """What one `POST /v1/warm` sends: a page's HTML, or image URLs."""

    name: str
    html: str | None = None
    urls: list[str] = field(default_factory=list)


@dataclass(slots=True)
class WarmJob:
    source: str
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    error: PromptpixError | None = None

    @property
    def running(self) -> bool:
        return bool(self.id) and self.state.get("status") != "completed"


def sources_of(targets: Sequence[str]) -> list[Source]:
    """Local pages, fetched pages, and the image URLs (together, in chunks the API takes)."""
    pages: list[Source] = []
    images: list[str] = []
    for target in targets:
        parts = urlsplit(target)
        if os.path.exists(target):
            pages.append(Source(target, html=read_page(target)))
        elif parts.scheme in ("http", "https") and parts.netloc:
            if parts.path.startswith("/i/"):
                images.append(target)
            else:
                pages.append(Source(target, html=fetch_page(target)))
        elif target.startswith("/i/"):
            images.append(target)  # a path on the gateway
        else:
            raise Stop(f"{target}: no such file, and not an http(s) URL")
    chunks = [images[i : i + WARM_CHUNK] for i in range(0, len(images), WARM_CHUNK)]
    return pages + [Source("arguments", urls=chunk) for chunk in chunks]


def read_page(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise Stop(f"cannot read {path}: {exc.strerror or exc}") from None


def fetch_page(url: str) -> str:
    try:
        response = httpx.get(url, follow_redirects=True, timeout=PAGE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise Stop(f"cannot fetch {url}: {exc or type(exc).__name__}") from None
    if response.status_code >= 400:
        raise Stop(f"cannot fetch {url}: it answered {response.status_code}")
    return response.text


def warm_command(args: argparse.Namespace) -> int:
    url, key = connection(args)
    sources = sources_of(args.targets)
    with Client(url, api_key=key) as client:
        check(client, url)
        jobs = [start(client, url, source) for source in sources]
        total = sum(int(job.state.get("total", 0)) for job in jobs)
        kinds = ("done", "skipped", "failed")
        progress = Progress("warm", total, kinds, quiet=args.quiet, unit="image")
        try:
            follow(client, jobs, progress, time.monotonic() + args.timeout)
        except PromptpixError as exc:
            raise Stop(
                f"lost the gateway while following ({failure_line(exc)}); the jobs go on", 1
            ) from None
        finally:
            progress.close()
    failed = report(jobs)
    return 1 if failed else 0


def start(client: Client, url: str, source: Source) -> WarmJob:
    job = WarmJob(source.name)
    try:
        if source.html is not None:
            started = client.warm(html=source.html)
        else:
            started = client.warm(urls=source.urls)
    except PromptpixError as exc:
        if exc.status in (0, 401, 403):
            raise setup_failure(exc, url) from None
        job.error = exc  # this page alone is refused (too large, ...)
        return job
    job.id = str(started["id"])
    job.state = {"status": "running", "total": started.get("total", 0)}
    return job


def follow(client: Client, jobs: list[WarmJob], progress: Progress, deadline: float) -> None:
    """Each job's status read until every one is completed, the counts shown meanwhile."""
    while True:
        for job in jobs:
            if job.running:
                job.state = client.get_warm(job.id)
        states = [job.state for job in jobs]
        progress.update(
            total=sum(int(s.get("total", 0)) for s in states),
            **{kind: sum(int(s.get(kind, 0)) for s in states) for kind in progress.counts},
        )
        if not any(job.running for job in jobs):
            return
        if time.monotonic() > deadline:
            for job in jobs:
                if job.running:
                    job.error = PromptpixError(0, "timeout", f"warm job {job.id} still runs")
            return
        time.sleep(POLL_S)


def report(jobs: list[WarmJob]) -> int:
    """One JSON line per URL on stdout, a summary on stderr; answers how many failed."""
    counts = dict.fromkeys(("generated", "stored", "failed", "ignored", "pending"), 0)
    failed_jobs = 0
    for job in jobs:
        if job.error is not None:
            failed_jobs += 1
            error = error_of(job.error)
            say(f"{job.source}: {failure_line(job.error)}")
            print(json_line({"source": job.source, "outcome": "failed", "error": error}))
        for item in job.state.get("items", []):
            outcome = str(item.get("outcome"))
            counts[outcome] = counts.get(outcome, 0) + 1
            print(json_line({**item, "source": job.source}))
    sys.stdout.flush()
    images = counts["generated"] + counts["stored"] + counts["failed"] + counts["pending"]
    summary = (
        f"warm: {images} images: {counts['generated']} generated, {counts['stored']} "
        f"already stored, {counts['failed']} failed"
    )
    if counts["pending"]:
        summary += f", {counts['pending']} not finished"
    if counts["ignored"]:
        summary += f"; {counts['ignored']} ignored (not this project's images on this gateway)"
    print(summary, file=sys.stderr)
    return counts["failed"] + counts["pending"] + failed_jobs
