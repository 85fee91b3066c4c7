"""Semantic search for agent memory: the text embedding and the vector index, each behind a small interface.

The embedded default needs no model and no server. ``HashedEmbedder`` turns
text into a signed feature-hashing vector of its words, word pairs and
character n-grams (so "timeouts" is near "TimeoutError"), L2-normalised;
``NumpyIndex`` keeps the stored vectors as one float32 matrix and scores a
query by exact cosine (one matrix-vector product), plus a boost for episodes
whose system or error signature the query names exactly, so that naming
them always finds them however much else the text says.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Protocol

import numpy as np

#: Score added when the query names an episode's system, and when it names its error class or code.
SYSTEM_BOOST = 0.5
SIGNATURE_BOOST = 0.5

_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...


def words(text: str) -> list[str]:
    """Lower-case words, CamelCase split as well as whole: 'TaskTimeout' gives 'task', 'timeout', 'tasktimeout'."""
    split = _CAMEL.sub(" ", text).lower()
    found = _WORD.findall(split)
    whole = [w for w in _WORD.findall(text.lower()) if w not in found]
    return found + whole


class HashedEmbedder:
    """Deterministic: the same text gives the same vector in every process and version of numpy."""

    def __init__(self, dim: int = 128) -> None:
        if dim & (dim - 1):
            raise ValueError("dim must be a power of two")
        self.dim = dim
        self.name = f"hashed-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        # Every feature of every text as (row * dim + bucket, signed weight), summed by one bincount.
        cells: list[int] = []
        weights: list[float] = []
        for row, text in enumerate(texts):
            base = row * self.dim
            tokens = words(text)
            for token in tokens:
                buckets, signed = _token_features(token, self.dim)
                cells += [base + b for b in buckets]
                weights += signed
            for a, b in zip(tokens, tokens[1:], strict=False):
                h = zlib.crc32(f"b:{a} {b}".encode())
                cells.append(base + (h & (self.dim - 1)))
                weights.append(0.7 if h & 0x80000000 else -0.7)
        flat = np.bincount(np.asarray(cells, dtype=np.int64), weights=weights, minlength=len(texts) * self.dim)
        out = flat.reshape(len(texts), self.dim).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out


@functools.lru_cache(maxsize=65_536)
def _token_features(token: str, dim: int) -> tuple[list[int], list[float]]:
    """A word's own feature and its character 4-grams, as (buckets, signed weights); words repeat, so cached."""
    padded = f"<{token}>"
    # Character n-grams carry plurals and inflections ("timeouts", "timed out"): weighted low, they are many.
    features = [(f"w:{token}", 1.0)] + [(f"c:{padded[i : i + 4]}", 0.25) for i in range(max(1, len(padded) - 3))]
    hashes = [zlib.crc32(f.encode()) for f, _ in features]
    return [h & (dim - 1) for h in hashes], [
        w if h & 0x80000000 else -w for h, (_, w) in zip(hashes, features, strict=True)
    ]


def _name_words(text: str) -> list[str]:
    return _WORD.findall(_CAMEL.sub(" ", text).lower())


def key_of(text: str) -> int:
    """A stable key of a name, to compare systems and signature parts as integers: "TaskTimeout" = "task timeout"."""
    return zlib.crc32(" ".join(_name_words(text)).encode())


def query_keys(query: str, longest: int = 4) -> np.ndarray:
    """The keys of every run of up to ``longest`` words in the query: a system is often more than one word."""
    tokens = _name_words(query)
    keys = {
        zlib.crc32(" ".join(tokens[i : i + n]).encode())
        for n in range(1, longest + 1)
        for i in range(len(tokens) - n + 1)
    }
    return np.fromiter(keys, dtype=np.int64, count=len(keys))


@dataclass(frozen=True)
class Hit:
    id: int
    score: float


class VectorIndex(Protocol):
    def add(self, ids: list[int], vectors: np.ndarray, systems: list[int], signatures: list[list[int]]) -> None:
        """``systems``: the key of each episode's system (0 for none); ``signatures``: the keys of its class and code."""
        ...

    def search(self, vector: np.ndarray, keys: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best episodes for a query vector and the keys of the words it names, best first."""
        ...

    def __len__(self) -> int: ...


class NumpyIndex:
    """Exact cosine over every vector; appends are buffered and joined into the matrix on the next search.

    Scoring reads the whole matrix once per query, so its size is the cost: at 128 float32 dimensions, 100,000
    episodes are 51 MB. Systems and signature parts are kept as inverted lists, so a boost touches only its rows.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._by_system: dict[int, list[int]] = defaultdict(list)
        self._by_signature: dict[int, list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._ids) + sum(len(p[0]) for p in self._pending)

    def add(self, ids: list[int], vectors: np.ndarray, systems: list[int], signatures: list[list[int]]) -> None:
        if not ids:
            return
        row = len(self)
        for system, keys in zip(systems, signatures, strict=True):
            if system:
                self._by_system[system].append(row)
            for key in keys:
                self._by_signature[key].append(row)
            row += 1
        self._pending.append((np.asarray(ids, dtype=np.int64), vectors.astype(np.float32, copy=False)))

    def search(self, vector: np.ndarray, keys: np.ndarray, k: int) -> list[Hit]:
        self._join()
        if not len(self._ids) or k <= 0:
            return []
        scores = self._matrix @ vector.astype(np.float32)
        for boost, lists in ((SYSTEM_BOOST, self._by_system), (SIGNATURE_BOOST, self._by_signature)):
            rows = [lists[key] for key in keys.tolist() if key in lists]
            if rows:
                named = np.zeros(len(scores), dtype=bool)
                for r in rows:
                    named[r] = True
                scores[named] += boost
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [Hit(int(self._ids[i]), float(scores[i])) for i in best]

    def _join(self) -> None:
        if not self._pending:
            return
        ids, vectors = zip(*self._pending, strict=True)
        self._ids = np.concatenate([self._ids, *ids])
        self._matrix = np.concatenate([self._matrix, *vectors])
        self._pending = []
