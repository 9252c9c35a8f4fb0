"""The image URLs a web page names: every `src`, every `srcset` candidate (of `<img>` and of
`<source>` in `<picture>`), and every CSS `url(...)` of `style` attributes and `<style>`
elements, in document order, each once.

The page goes through an HTML5 parser (lexbor, by selectolax), so what a browser would not
load is not found: a URL in a comment, in a `<script>` string, in an attribute of another
name. Only the CSS text of a style is scanned for its `url()` tokens.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

_CSS_COMMENT = re.compile(r"/\*.*?\*/", re.S)
# A CSS url() token: quoted either way, or bare (no spaces, quotes or parentheses).
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^\s"'()]+))\s*\)""", re.IGNORECASE)
_SPACE = " \t\n\r\f"


def image_urls(html: str) -> list[str]:
    """The page's image URLs as written (entities decoded), in order, without repeats."""
    tree = LexborHTMLParser(html)
    found: list[str] = []
    for node in tree.css("[src], [srcset], [style], style"):
        attrs = node.attributes
        if node.tag == "style":
            found.extend(css_urls(node.text(deep=True)))
        if attrs.get("src"):
            found.append(str(attrs["src"]).strip(_SPACE))
        if attrs.get("srcset"):
            found.extend(srcset_urls(str(attrs["srcset"])))
        if attrs.get("style"):
            found.extend(css_urls(str(attrs["style"])))
    return list(dict.fromkeys(u for u in found if u))


def srcset_urls(value: str) -> list[str]:
    """The URLs of a `srcset`, split as the HTML standard says: a URL may hold commas (a
    query's), a candidate ends at the comma after its descriptors."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and (value[i] in _SPACE or value[i] == ","):
            i += 1
        start = i
        while i < n and value[i] not in _SPACE:
            i += 1
        url = value[start:i]
        if url.endswith(","):  # no descriptors: the commas end the candidate
            out.append(url.rstrip(","))
            continue
        if url:
            out.append(url)
        depth = 0  # skip the descriptors, up to a comma outside parentheses
        while i < n and not (value[i] == "," and depth == 0):
            depth += {"(": 1, ")": -1}.get(value[i], 0)
            i += 1
    return [u for u in out if u]


def css_urls(css: str) -> list[str]:
    """The `url()` tokens of CSS text, comments left out."""
    text = _CSS_COMMENT.sub(" ", css)
    return [next(g for g in m.groups() if g is not None).strip() for m in _CSS_URL.finditer(text)]
