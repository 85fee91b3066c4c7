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

import re
import zlib
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

    def __init__(self, dim: int = 256) -> None:
        if dim & (dim - 1):
            raise ValueError("dim must be a power of two")
        self.dim = dim
        self.name = f"hashed-{dim}"

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        mask = self.dim - 1
        for row, text in enumerate(texts):
            vector = out[row]
            for feature, weight in _features(text):
                h = zlib.crc32(feature.encode())
                vector[h & mask] += weight if h & 0x80000000 else -weight
            norm = float(np.linalg.norm(vector))
            if norm:
                vector /= norm
        return out


def _features(text: str) -> list[tuple[str, float]]:
    tokens = words(text)
    features = [(f"w:{t}", 1.0) for t in tokens]
    features += [(f"b:{a} {b}", 0.7) for a, b in zip(tokens, tokens[1:], strict=False)]
    for t in tokens:
        padded = f"<{t}>"
        # Character n-grams carry plurals and inflections ("timeouts", "timed out"): weighted low, they are many.
        features += [(f"c:{padded[i : i + 4]}", 0.25) for i in range(max(1, len(padded) - 3))]
    return features


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
    """Exact cosine over every vector; appends are buffered and joined into the matrix on the next search."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._systems = np.zeros(0, dtype=np.int64)
        # Up to two signature keys per episode (error class, code); 0 where there is none.
        self._signatures = np.zeros((0, 2), dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._ids) + sum(len(p[0]) for p in self._pending)

    def add(self, ids: list[int], vectors: np.ndarray, systems: list[int], signatures: list[list[int]]) -> None:
        if not ids:
            return
        codes = np.zeros((len(ids), 2), dtype=np.int64)
        for row, keys in enumerate(signatures):
            codes[row, : len(keys[:2])] = keys[:2]
        self._pending.append(
            (np.asarray(ids, dtype=np.int64), vectors.astype(np.float32), np.asarray(systems, dtype=np.int64), codes)
        )

    def search(self, vector: np.ndarray, keys: np.ndarray, k: int) -> list[Hit]:
        self._join()
        if not len(self._ids) or k <= 0:
            return []
        scores = self._matrix @ vector.astype(np.float32)
        if len(keys):
            named = np.isin(self._systems, keys) & (self._systems != 0)
            scores += SYSTEM_BOOST * named
            signed = (np.isin(self._signatures, keys) & (self._signatures != 0)).any(axis=1)
            scores += SIGNATURE_BOOST * signed
        k = min(k, len(scores))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [Hit(int(self._ids[i]), float(scores[i])) for i in best]

    def _join(self) -> None:
        if not self._pending:
            return
        ids, vectors, systems, signatures = zip(*self._pending, strict=True)
        self._ids = np.concatenate([self._ids, *ids])
        self._matrix = np.concatenate([self._matrix, *vectors])
        self._systems = np.concatenate([self._systems, *systems])
        self._signatures = np.concatenate([self._signatures, *signatures])
        self._pending = []
