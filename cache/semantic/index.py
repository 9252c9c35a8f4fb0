"""The semantic index: prompt embeddings per project and aspect ratio, searched by cosine.

Two thresholds, as in the Image Builder v2 API: `REUSE_THRESHOLD` (0.85) lets a project that
opts in reuse a near-identical earlier image before paying for a generation;
`SIMILAR_THRESHOLD` (0.70) serves a related image (`X-Cache-Status: SIMILAR`) once every
generator has failed. The index lives in memory; embeddings are computed elsewhere
(`service.py`), never on the event loop.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .embedding import DIMENSIONS, Matrix

REUSE_THRESHOLD = 0.85  # before generating, for projects that opt in
SIMILAR_THRESHOLD = 0.70  # after every generator failed
MAX_PER_SCOPE = 50_000  # entries kept per project and ratio; the oldest go first

Ratio = tuple[int, int] | str


def ratio_label(ratio: Ratio) -> str:
    """`(16, 9)` and `"16:9"` both become `"16:9"`."""
    if isinstance(ratio, str):
        w, _, h = ratio.partition(":")
        return f"{int(w)}:{int(h)}"
    return f"{int(ratio[0])}:{int(ratio[1])}"


def to_bytes(vector: Matrix) -> bytes:
    """An embedding as little-endian float32 bytes (1,536 bytes for 384 dimensions)."""
    return np.asarray(vector, dtype="<f4").reshape(-1).tobytes()


def from_bytes(data: bytes, dimensions: int = DIMENSIONS) -> Matrix:
    if len(data) != dimensions * 4:
        raise ValueError(f"an embedding of {dimensions} float32 is {dimensions * 4} bytes")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _unit(vector: Matrix) -> Matrix:
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


class SemanticMatch(NamedTuple):
    key: str  # the matching original's content key
    similarity: float


class _Scope:
    """The entries of one project and ratio: a row-per-entry matrix with spare capacity."""

    def __init__(self, dimensions: int, limit: int) -> None:
        self.dimensions = dimensions
        self.limit = limit
        self.matrix = np.zeros((16, dimensions), dtype=np.float32)
        self.keys: list[str] = []
        self.prompts: list[str] = []
        self.rows: dict[str, int] = {}

    def add(self, key: str, prompt: str, vector: Matrix) -> None:
        row = self.rows.get(key)
        if row is not None:  # same original again: refresh it in place
            self.matrix[row] = vector
            self.prompts[row] = prompt
            return
        if len(self.keys) >= self.limit:
            self._drop_oldest(max(1, self.limit // 10))
        n = len(self.keys)
        if n == len(self.matrix):
            grown = np.zeros((n * 2, self.dimensions), dtype=np.float32)
            grown[:n] = self.matrix
            self.matrix = grown
        self.matrix[n] = vector
        self.keys.append(key)
        self.prompts.append(prompt)
        self.rows[key] = n

    def _drop_oldest(self, count: int) -> None:
        n = len(self.keys)
        self.matrix[: n - count] = self.matrix[count:n].copy()
        del self.keys[:count], self.prompts[:count]
        self.rows = {k: i for i, k in enumerate(self.keys)}

    def best(self, vector: Matrix) -> tuple[str, float] | None:
        n = len(self.keys)
        if n == 0:
            return None
        scores = self.matrix[:n] @ vector
        i = int(np.argmax(scores))
        return self.keys[i], float(scores[i])


class SemanticIndex:
    """Prompt embeddings of stored originals, kept apart per project and aspect ratio.

    Vectors are normalised on the way in, so a dot product is the cosine similarity. A search
    is one matrix-vector product over the scope (about 1 ms per 10,000 entries), cheap enough
    for the event loop. Not thread-safe: use it from one thread (the loop).
    """

    def __init__(self, dimensions: int = DIMENSIONS, max_per_scope: int = MAX_PER_SCOPE) -> None:
        self.dimensions = dimensions
        self.max_per_scope = max_per_scope
        self._scopes: dict[tuple[str, str], _Scope] = {}

    def __len__(self) -> int:
        return sum(len(s.keys) for s in self._scopes.values())

    def add(self, key: str, prompt: str, embedding: Matrix, *, project: str, ratio: Ratio) -> None:
        vector = _unit(embedding)
        if vector.shape != (self.dimensions,):
            raise ValueError(f"expected {self.dimensions} dimensions, got {vector.shape}")
        scope_id = (project, ratio_label(ratio))
        scope = self._scopes.get(scope_id)
        if scope is None:
            scope = self._scopes[scope_id] = _Scope(self.dimensions, self.max_per_scope)
        scope.add(key, prompt, vector)

    def best_match(
        self, embedding: Matrix, project: str, ratio: Ratio, threshold: float
    ) -> SemanticMatch | None:
        """The most similar entry of this project and ratio, if it reaches `threshold`."""
        scope = self._scopes.get((project, ratio_label(ratio)))
        found = scope.best(_unit(embedding)) if scope else None
        if found is None or found[1] < threshold:
            return None
        return SemanticMatch(found[0], min(found[1], 1.0))
