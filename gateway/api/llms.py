"""`GET /llms.txt`: the live URL grammar written for a model that writes HTML. Made from the
same constants the parser checks (parameters, ratios, styles, limits), so it cannot promise
what the gateway refuses."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from promptpix.cache.control import Project
from promptpix.generators.prompts import MAX_PROMPT_CHARS
from promptpix.generators.ratios import NATIVE_SIZES, ratio_text
from promptpix.generators.styles import BUILTIN_STYLES

from ..params import MAX_NEG, MAX_SEED, ParseRules
from ..urls import live_url
from .routing import Call, Operation


def llms_text(base: str, rules: ParseRules, demo: bool) -> str:
    """The document, with examples on `base`."""
    project = Project("demo")
    one = live_url(base, project, {"prompt": "a red fox in the snow", "ar": "16:9", "w": "800"})
    sizes = [
        (w, live_url(base, project, {"prompt": "a red fox in the snow", "ar": "16:9", "w": str(w)}))
        for w in (400, 800, 1200, 1600)
    ]
    srcset = ", ".join(f"{url} {w}w" for w, url in sizes)
    ratios = ", ".join(f"{ratio_text(r)} ({w}x{h})" for r, (w, h) in NATIVE_SIZES.items())
    styles = "\n".join(f"- `{name}`: {style.note}" for name, style in BUILTIN_STYLES.items())
    generators = ", ".join(sorted(rules.generator_ids))
    demo_line = (
        "The `demo` project is open on this gateway: its URLs need no key and no signature."
        if demo
        else "This gateway has no open demo project: use your project's slug."
    )
    return f"""# promptpix

> An image gateway: an `<img src>` URL that carries a prompt is an image. The same URL is
> the same image forever (generated once, then cached by CDNs for a year), so write the
> URL straight into the HTML; there is nothing to call first.

{demo_line}

## The URL

`{base.rstrip("/")}/i/{{project}}?prompt=...&ar=W:H&w=...`

Example: `{one}`

Generation parameters (they choose the image; change one and it is another image):

- `prompt` (required): what to draw, any language, 1..{MAX_PROMPT_CHARS} characters.
  Describe the subject, setting, mood and composition. URL-encode it (spaces as `+` or `%20`).
- `ar`: aspect ratio `W:H` (integers 1..64). Native, generated as is: {ratios}.
  Any other ratio (e.g. `2:7`) is cut from the nearest native one; default: the ratio of
  `w`x`h` when both are given, else 1:1.
- `style`: a preset (below). Default: the project's.
- `neg`: what to avoid, up to {MAX_NEG} characters.
- `seed`: 0..{MAX_SEED}, default 0. Another seed is another image of the same prompt.
- `enhance`: `1` lets an AI rewrite the prompt first (default: the project's).
- `model`: pin one generator ({generators}).
- `@name` in a prompt sends the project's uploaded asset `name` (a logo, a product) to the
  generator as a reference image.

Transform parameters (the same image, presented differently; cheap):

- `w`, `h`: the box in CSS pixels, 1..{rules.max_dimension}. One alone keeps the ratio.
- `dpr`: device pixel ratio 1..4 (multiplies `w`/`h`).
- `fit`: `cover` (default, fill and crop), `contain` (fit and pad with `bg`), `inside`
  (fit, never enlarge), `fill` (stretch).
- `anchor`: what a crop keeps: `focal` (default, the subject), `center`, `top`, `bottom`,
  `left`, `right`, `attention`, `entropy`, or `X,Y` fractions.
- `fmt`: `{rules.default_format}` (default), `avif`, `jpeg`, `png`, or `auto` (best the
  browser accepts).
- `q`: quality 1..100. `bg`: padding colour `RRGGBB` or `transparent`. `rmbg`: `1` removes
  the background (needs webp, avif or png). `blur`: 0..100.
- `ch`: `1` lets the browser's Client Hints (`Sec-CH-DPR`, `Sec-CH-Width`) fill `dpr` and
  `w`. Prefer an explicit srcset: it is cached the same everywhere.

Any other parameter, or a value out of range, is a 400 with a JSON error naming it.

## Styles

{styles}

## Write it like this

Give every image its size and a srcset, so the browser asks for the width it shows:

```html
<img src="{one}"
     srcset="{srcset}"
     sizes="(max-width: 800px) 100vw, 800px"
     width="800" height="450" alt="A red fox in the snow" loading="lazy">
```

Keep the generation parameters identical across the srcset (only `w` changes), so every
width is cut from one generated original.

## Signed URLs

A project may require signed URLs (`sig=`): a URL without a valid signature is a 403
`signature_required` or `signature_invalid`. Do not invent signatures. Ask the gateway for
signed URLs with a project key: `POST /v1/urls` with the same parameters as JSON answers
`{{"url", "srcset", "html"}}`, ready to paste.

## Errors

Failures are JSON `{{"error": {{"code", "message", "param"}}}}`: 400 a bad parameter, 403 a
signature, 404 an unknown project or asset, 422 a refused prompt, 429 a quota, budget or
rate limit (with `Retry-After`), 503 every generator failed.

More: `{base.rstrip("/")}/docs` (the JSON API) and `{base.rstrip("/")}/openapi.json`.
"""


def operation(rules: ParseRules, public_url: str, demo: bool) -> Operation:
    async def llms(call: Call) -> Any:
        base = public_url or str(call.request.base_url)
        response = Response(llms_text(base, rules, demo), media_type="text/plain; charset=utf-8")
        response.headers["cache-control"] = "public, max-age=3600"
        response.headers["access-control-allow-origin"] = "*"
        return response

    return Operation(
        "GET",
        "/llms.txt",
        llms,
        "The live URL grammar, written for a model that writes HTML",
        auth="public",
        tags=("service",),
    )
