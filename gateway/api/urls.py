"""`POST /v1/urls`: a live URL, its srcset and an `<img>`, signed with the project's secret
and without generating anything: how a page or an agent gets signed URLs without holding
the secret."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import BadParameter
from ..params import ParseRules, parse_fields, split_query
from ..projects import Projects
from ..urls import img_tag, live_url, pin_ratio, srcset, widths
from .models import UrlBody, UrlOut
from .routing import Call, Operation

OWN_FIELDS = ("url", "widths", "sizes", "alt")


def fields_of(body: UrlBody) -> dict[str, str]:
    """The body's live parameters as a URL's query would carry them."""
    if body.url is not None:
        given = [f for f in body.__struct_fields__ if f not in OWN_FIELDS]
        if any(getattr(body, f) is not None for f in given):
            raise BadParameter("give either 'url' or the parameters, not both", param="url")
        parts = urlsplit(body.url)
        return split_query(parts.query)
    out: dict[str, str] = {}
    for name in body.__struct_fields__:
        value = getattr(body, name)
        if name in OWN_FIELDS or value is None:
            continue
        out[name] = ("1" if value else "0") if isinstance(value, bool) else f"{value}"
    return out


def operations(projects: Projects, rules: ParseRules, public_url: str) -> list[Operation]:
    async def make(call: Call) -> Any:
        body: UrlBody = call.body
        assert call.principal.key is not None
        project = await projects.get(call.principal.key.project)
        fields = pin_ratio(fields_of(body), project.signing)
        if body.url is not None:
            path = urlsplit(body.url).path
            if path not in ("", f"/i/{project.slug}"):
                raise BadParameter(f"'url' must be a /i/{project.slug} URL", param="url")
        request = parse_fields(dict(fields), project, rules)  # the live URL's own 400s
        base = public_url or str(call.request.base_url)
        url = live_url(base, project, fields)
        candidates = widths(fields, rules.max_dimension, body.widths or ())
        css_w = int(fields["w"]) if "w" in fields else None
        css_h = int(fields["h"]) if "h" in fields else None
        view = request.transform.view
        if css_w and not css_h:
            css_h = round(css_w * view[1] / view[0])
        elif css_h and not css_w:
            css_w = round(css_h * view[0] / view[1])
        set_ = srcset(base, project, fields, candidates)
        sizes = body.sizes or (f"(max-width: {css_w}px) 100vw, {css_w}px" if css_w else "100vw")
        tag = img_tag(
            url,
            set_,
            alt=body.alt or fields.get("prompt", "")[:200],
            sizes=sizes,
            width=css_w or 0,
            height=css_h or 0,
        )
        return UrlOut(url=url, srcset=set_, html=tag, width=css_w, height=css_h)

    return [
        Operation(
            "POST",
            "/v1/urls",
            make,
            "A live URL, srcset and <img>, signed when the project signs, without generating",
            body=UrlBody,
            answer=UrlOut,
            scope="generate",
            errors=(400, 401, 403, 413),
            tags=("images",),
        )
    ]
