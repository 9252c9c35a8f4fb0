"""`imagen`: Imagen through google-genai on Vertex AI.

Imagen is not served to a plain Gemini API key: this generator needs Vertex AI, either a
project and location with Application Default Credentials (`GOOGLE_CLOUD_PROJECT`,
`GOOGLE_CLOUD_LOCATION`) or a Vertex AI express-mode key (`PROMPTPIX_VERTEX_API_KEY`).
It makes five ratios; the others are generated at the nearest (and cropped afterwards).
"""

from __future__ import annotations

import warnings
from typing import Any

from .base import GeneratedImage, GenerationError, GenerationRequest, Refused
from .gemini import _errors, _types, google_client, map_api_error
from .ratios import ratio_text
from .settings import ImagenSettings

NATIVE_SIZES: dict[tuple[int, int], tuple[int, int]] = {
    (1, 1): (1024, 1024),
    (3, 4): (896, 1280),
    (4, 3): (1280, 896),
    (9, 16): (768, 1408),
    (16, 9): (1408, 768),
}

# The SDK marks `generate_images` as deprecated in favour of `generate_content`, which Imagen
# models do not answer on Vertex AI yet.
warnings.filterwarnings("ignore", message=r"The generate_images method is deprecated")


class ImagenGenerator:
    kind = "imagen"
    native_sizes = NATIVE_SIZES

    def __init__(
        self, settings: ImagenSettings, *, timeout_s: float = 120.0, id: str = "imagen"
    ) -> None:
        self.id = id
        self.model = settings.model
        self._types = _types()
        self._errors = _errors()
        if settings.vertex_api_key:  # express mode: a key, no project
            args: dict[str, Any] = {"vertexai": True, "api_key": settings.vertex_api_key}
        else:
            args = {
                "vertexai": True,
                "project": settings.project or None,
                "location": settings.location,
            }
        self._client, self._http = google_client(settings.base_url or None, timeout_s, **args)

    async def generate(self, request: GenerationRequest) -> GeneratedImage:
        types = self._types
        config = types.GenerateImagesConfig(
            number_of_images=1,
            aspect_ratio=ratio_text(request.ratio),
            seed=request.seed,
            add_watermark=False,  # a seed is only honoured without the watermark
            output_mime_type="image/png",
            include_rai_reason=True,
        )
        try:
            response = await self._client.aio.models.generate_images(
                model=self.model, prompt=request.prompt, config=config
            )
        except self._errors.APIError as exc:
            raise map_api_error(self.id, exc) from exc
        return self._image(response)

    def _image(self, response: Any) -> GeneratedImage:
        images = response.generated_images or []
        reasons = []
        for generated in images:
            image = generated.image
            if image is not None and image.image_bytes:
                return GeneratedImage(
                    data=image.image_bytes,
                    content_type=image.mime_type or "image/png",
                    generator=self.id,
                    model=self.model,
                    details={"enhanced_prompt": generated.enhanced_prompt}
                    if generated.enhanced_prompt
                    else {},
                )
            if generated.rai_filtered_reason:
                reasons.append(generated.rai_filtered_reason)
        if reasons:
            raise Refused(self.id, "; ".join(reasons)[:300])
        if images:
            raise GenerationError(self.id, "answer has no image bytes")
        # Vertex AI answers an empty prediction list when every image was filtered.
        raise Refused(self.id, "no image (filtered)")

    async def aclose(self) -> None:
        await self._http.aclose()
