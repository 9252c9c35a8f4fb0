"""libvips set-up for a service: one thread an operation, no cache, allow-listed loaders."""

from __future__ import annotations

import pyvips

# One thread per image: parallelism comes from the transform pool, not from inside libvips.
CONCURRENCY = 1
ALLOWED_LOADERS = (
    "VipsForeignLoadJpeg",
    "VipsForeignLoadPng",
    "VipsForeignLoadWebp",
    "VipsForeignLoadHeif",
    "VipsForeignLoadNsgif",  # uploads may be GIFs (the first frame is the image)
)
_configured = False


def configure() -> None:
    """Idempotent; called before any image is decoded."""
    global _configured
    if _configured:
        return
    pyvips.concurrency_set(CONCURRENCY)
    pyvips.cache_set_max(0)
    pyvips.cache_set_max_mem(0)
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ALLOWED_LOADERS:
        pyvips.operation_block_set(loader, False)
    _configured = True
