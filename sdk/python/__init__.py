"""The promptpix Python client: `Client` and `AsyncClient` for the JSON API, and live image
URLs, signatures and srcsets made on the caller's side (`image_url`, `sign_url`, `srcset`).

    from promptpix.client import Client
    client = Client("http://127.0.0.1:8080", api_key="pk_...")
    image = client.generate("a red fox in the snow", aspect_ratio="16:9")
    print(image["urls"]["live"])
"""

from __future__ import annotations

from .calls import Call
from .clients import AsyncClient, Client
from .errors import PromptpixError
from .models import (
    Asset,
    AssetPage,
    Generation,
    GenerationBody,
    GenerationParams,
    ImageParams,
    Page,
    UrlParams,
    UrlSet,
)
from .urls import canonical, image_url, sign_url, signature, srcset

__all__ = [
    "Asset",
    "AssetPage",
    "AsyncClient",
    "Call",
    "Client",
    "Generation",
    "GenerationBody",
    "GenerationParams",
    "ImageParams",
    "Page",
    "PromptpixError",
    "UrlParams",
    "UrlSet",
    "canonical",
    "image_url",
    "sign_url",
    "signature",
    "srcset",
]
