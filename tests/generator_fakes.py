"""Local HTTP servers that speak the generators' wire protocols, for the generator tests.

Each runs in threads on a free loopback port, answers from a script (one queued answer per
call, then a default), records every request and measures how many calls were in flight at
once, so the tests check limits where they matter: at the server.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pyvips

from promptpix.generators.chain import Chain
from promptpix.generators.limits import Limits


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    """A real PNG: a coloured field with a bright disc off-centre (a subject to find)."""
    img = pyvips.Image.black(width, height, bands=3) + list(colour)
    disc = pyvips.Image.black(width, height).draw_circle(
        255, width * 2 // 3, height // 3, max(2, min(width, height) // 6), fill=True
    )
    img = disc.ifthenelse([250, 250, 250], img)
    return bytes(img.cast("uchar").copy(interpretation="srgb").pngsave_buffer())


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Responder = Callable[[Call], Answer]


class FakeServer:
    """A threaded HTTP/1.1 server; `respond(call)` decides each answer unless one is queued."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.queued: deque[Answer | Responder] = deque()
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                call = Call(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                with server.lock:
                    server.calls.append(call)
                    server.in_flight += 1
                    server.peak = max(server.peak, server.in_flight)
                    scripted = server.queued.popleft() if server.queued else None
                try:
                    if scripted is None:
                        answer = server.respond(call)
                    elif isinstance(scripted, Answer):
                        answer = scripted
                    else:
                        answer = scripted(call)
                    if answer.delay_s:
                        time.sleep(answer.delay_s)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                payload = answer.body
                headers = dict(answer.headers)
                if not isinstance(payload, bytes):
                    payload = json.dumps(payload).encode()
                    headers.setdefault("content-type", "application/json")
                try:
                    self.send_response(answer.status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (a timeout test)
                    self.close_connection = True

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that went away mid-answer is part of the tests

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> FakeServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def then(self, *answers: Answer | Responder) -> FakeServer:
        with self.lock:
            self.queued.extend(answers)
        return self

    def count(self, path_part: str = "") -> int:
        with self.lock:
            return sum(1 for c in self.calls if path_part in c.path)


# --- Gemini (generateContent) -------------------------------------------------------------

GEMINI_SIZES = {
    "1:1": (128, 128),
    "2:3": (104, 156),
    "3:2": (156, 104),
    "3:4": (108, 148),
    "4:3": (148, 108),
    "4:5": (112, 144),
    "5:4": (144, 112),
    "9:16": (96, 168),
    "16:9": (168, 96),
    "21:9": (192, 84),
}


def gemini_image(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "modelVersion": "gemini-2.5-flash-image",
    }


def gemini_refusal(reason: str = "IMAGE_SAFETY") -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model"}, "finishReason": reason}]}


def google_error(code: int, status: str, retry_delay: str | None = None) -> dict[str, Any]:
    details: list[dict[str, Any]] = []
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    return {
        "error": {"code": code, "message": f"fake {status}", "status": status, "details": details}
    }


GENERATE = re.compile(r"^/v1(?:beta)?/models/([^/:]+):generateContent$")


def gemini_ok(call: Call) -> Answer:
    """Answers a PNG at the asked ratio; prompts that say what they want get it."""
    if not GENERATE.match(call.path):
        return Answer(404, google_error(404, "NOT_FOUND"))
    body = call.json()
    prompt = " ".join(
        p.get("text", "") for c in body.get("contents", []) for p in c.get("parts", [])
    )
    if "forbidden" in prompt:
        return Answer(200, gemini_refusal("IMAGE_SAFETY"))
    if "outage" in prompt:
        return Answer(503, google_error(503, "UNAVAILABLE"))
    ratio = body.get("generationConfig", {}).get("imageConfig", {}).get("aspectRatio", "1:1")
    w, h = GEMINI_SIZES[ratio]
    return Answer(200, gemini_image(png(w, h)), delay_s=float("slow" in prompt) * 0.05)


# --- Imagen on Vertex AI (predict) ------------------------------------------------------------

IMAGEN_SIZES = {
    "1:1": (128, 128),
    "3:4": (112, 160),
    "4:3": (160, 112),
    "9:16": (96, 176),
    "16:9": (176, 96),
}


def imagen_ok(call: Call) -> Answer:
    if not call.path.endswith(":predict"):
        return Answer(404, google_error(404, "NOT_FOUND"))
    params = call.json().get("parameters", {})
    w, h = IMAGEN_SIZES[params.get("aspectRatio", "1:1")]
    return Answer(
        200,
        {
            "predictions": [
                {
                    "bytesBase64Encoded": base64.b64encode(png(w, h)).decode(),
                    "mimeType": "image/png",
                }
            ]
        },
    )


# --- OpenAI Images API -------------------------------------------------------------------


def openai_ok(call: Call) -> Answer:
    if call.path != "/v1/images/generations":
        return Answer(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
    size = call.json().get("size", "1024x1024")
    w, h = (int(v) // 8 for v in size.split("x"))
    return Answer(200, {"created": 1, "data": [{"b64_json": base64.b64encode(png(w, h)).decode()}]})


def openai_error(status: int, code: str, message: str = "fake") -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }


# --- ComfyUI -----------------------------------------------------------------------------


class ComfyUI:
    """The three routes of ComfyUI's API: a prompt is done after `polls_until_done` looks."""

    def __init__(self, polls_until_done: int = 2, image: bytes | None = None) -> None:
        self.polls_until_done = polls_until_done
        self.image = image
        self.graphs: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.fail_status = False

    def __call__(self, call: Call) -> Answer:
        if call.method == "POST" and call.path == "/prompt":
            graph = call.json()["prompt"]
            pid = f"p{len(self.graphs) + 1}"
            self.graphs[pid] = graph
            return Answer(200, {"prompt_id": pid, "number": len(self.graphs), "node_errors": {}})
        if call.method == "GET" and call.path.startswith("/history/"):
            pid = call.path.rsplit("/", 1)[1]
            self.polls[pid] = self.polls.get(pid, 0) + 1
            if self.polls[pid] < self.polls_until_done:
                return Answer(200, {})
            if self.fail_status:
                status = {
                    "status_str": "error",
                    "completed": False,
                    "messages": [["execution_error", {"exception_message": "out of memory"}]],
                }
                return Answer(200, {pid: {"outputs": {}, "status": status}})
            outputs = {
                "9": {"images": [{"filename": f"{pid}.png", "subfolder": "", "type": "output"}]}
            }
            status = {"status_str": "success", "completed": True, "messages": []}
            return Answer(200, {pid: {"outputs": outputs, "status": status}})
        if call.method == "GET" and call.path == "/view":
            pid = call.query["filename"][0].removesuffix(".png")
            latent = self.graphs[pid]["5"]["inputs"]
            data = (
                self.image
                if self.image is not None
                else png(latent["width"] // 8, latent["height"] // 8)
            )
            return Answer(200, data, {"content-type": "image/png"})
        return Answer(404, b"not found")


# --- shared by the generator tests ---------------------------------------------------------

FAST = Limits(retries=2, backoff_s=0.05, max_backoff_s=0.2, timeout_s=5.0)
OPEN: list[Chain] = []  # chains a test built; `close_chains` closes them after it


@pytest.fixture(autouse=True)
async def close_chains() -> AsyncIterator[None]:
    """Autouse in every module that imports it."""
    yield
    while OPEN:
        await OPEN.pop().close()
