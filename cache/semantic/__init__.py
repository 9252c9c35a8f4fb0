"""The semantic tier: stored prompts embedded (all-MiniLM-L6-v2 in numpy) on a thread of
their own, kept per project and aspect ratio, and searched by cosine for a similar image.

- `embedding`: the model's forward pass in numpy.
- `index`: the in-memory index, the thresholds, embeddings as bytes.
- `service`: the embedding thread behind a bounded queue; numpy's BLAS on one thread.
- `sidecar`: the cache the gateway uses: the index, fed from a sidecar file every worker
  appends to and reads back.
"""

from __future__ import annotations

from .embedding import DIMENSIONS, EmbeddingModelMissing, Matrix, MiniLM, cosine, model_dir
from .index import (
    MAX_PER_SCOPE,
    REUSE_THRESHOLD,
    SIMILAR_THRESHOLD,
    Ratio,
    SemanticIndex,
    SemanticMatch,
    from_bytes,
    ratio_label,
    to_bytes,
)
from .service import EmbeddingBusy, EmbeddingService, Encoder, one_blas_thread
from .sidecar import SemanticCache, open_semantic

__all__ = [
    "DIMENSIONS",
    "MAX_PER_SCOPE",
    "REUSE_THRESHOLD",
    "SIMILAR_THRESHOLD",
    "EmbeddingBusy",
    "EmbeddingModelMissing",
    "EmbeddingService",
    "Encoder",
    "Matrix",
    "MiniLM",
    "Ratio",
    "SemanticCache",
    "SemanticIndex",
    "SemanticMatch",
    "cosine",
    "from_bytes",
    "model_dir",
    "one_blas_thread",
    "open_semantic",
    "ratio_label",
    "to_bytes",
]
