"""Vector search in memory, for the embedded knowledge store.

Chunk vectors are stored as little-endian float32 BLOBs (:func:`to_blob`: the standard library
only, so writing needs no numpy). To search a scope, its vectors of the query's size become one
unit-length matrix (:func:`unit_matrix`), kept in a :class:`VectorCache` bounded in bytes;
cosine similarity is then one matrix product (:func:`nearest`). :func:`fuse` merges that
ranking with the word ranking by reciprocal rank fusion, so exact terms (names, ids) and
chunks indexed before the embedding model was configured still count.

numpy is imported inside the functions that need it, so a store that never searches by vector
never loads it.
"""

from __future__ import annotations

import sys
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.)


def to_blob(vector: Sequence[float]) -> bytes:
    """A vector as little-endian float32 bytes."""
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


@dataclass(frozen=True)
class ScopeVectors:
    """One scope's chunk vectors of one size, unit length, row ``i`` belonging to ``ids[i]``."""

    ids: npt.NDArray[np.int64]
    matrix: npt.NDArray[np.float32]

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.matrix.nbytes)


def unit_matrix(ids: Sequence[int], blobs: Sequence[bytes], dimensions: int) -> ScopeVectors:
    """Stored vectors (``dimensions`` float32 each) scaled to unit length; zero stays zero."""
    import numpy as np

    matrix = np.frombuffer(b"".join(blobs), dtype="<f4").astype(np.float32)
    matrix = matrix.reshape(len(blobs), dimensions)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return ScopeVectors(ids=np.asarray(ids, dtype=np.int64), matrix=matrix / norms)


def unit_query(query_embedding: Sequence[float]) -> npt.NDArray[np.float32] | None:
    """The query at unit length, or ``None`` when it cannot rank anything (zero, not finite)."""
    import numpy as np

    query = np.asarray(query_embedding, dtype=np.float32)
    norm = float(np.linalg.norm(query))
    if query.ndim != 1 or norm == 0.0 or not np.isfinite(norm):
        return None
    return query / norm


def nearest(
    vectors: ScopeVectors, query: npt.NDArray[np.float32], limit: int
) -> list[tuple[int, float]]:
    """``(chunk id, cosine similarity)`` of the ``limit`` rows closest to a unit ``query``,
    best first."""
    import numpy as np

    similarities = vectors.matrix @ query
    count = min(limit, similarities.shape[0])
    if count <= 0:
        return []
    top = np.argpartition(-similarities, count - 1)[:count]
    top = top[np.argsort(-similarities[top], kind="stable")]
    return [(int(vectors.ids[t]), float(similarities[t])) for t in top]


def fuse(rankings: Sequence[Sequence[int]]) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of rankings of chunk ids (best first): each ranking adds
    ``1 / (k + rank)`` to a chunk's score. Best first; ties go to the lower id."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    ordered = sorted(scores, key=lambda chunk_id: (-scores[chunk_id], chunk_id))
    return [(chunk_id, scores[chunk_id]) for chunk_id in ordered]


class VectorCache:
    """Loaded :class:`ScopeVectors` by (scope, dimensions), at most ``max_bytes`` in all; the
    least recently used go first. Not thread-safe: its store calls it under its own lock."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, int], ScopeVectors] = OrderedDict()

    def get(self, scope: str, dimensions: int) -> ScopeVectors | None:
        key = (scope, dimensions)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, scope: str, dimensions: int, vectors: ScopeVectors) -> None:
        if vectors.nbytes > self._max_bytes:
            return
        self._entries[(scope, dimensions)] = vectors
        while sum(v.nbytes for v in self._entries.values()) > self._max_bytes:
            self._entries.popitem(last=False)

    def forget(self, scope: str) -> None:
        """Drop a scope's vectors, of every size (called before a write to the scope)."""
        for key in [k for k in self._entries if k[0] == scope]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
