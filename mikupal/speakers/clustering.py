"""Speaker clustering: utterance embeddings of one video into speakers, partial embeddings into voices per utterance.

Both use scikit-learn's agglomerative clustering on cosine distance (``1 - cosine similarity``) with a distance
threshold instead of a number of clusters: two groups merge while the mean distance between their members
(``linkage: average``; ``complete`` and ``single`` are allowed) is below the threshold. Cluster labels are
renumbered in order of first appearance, so the earliest utterance of a video always belongs to ``spk0``.
"""

from __future__ import annotations

import numpy as np

from mikupal.speakers.base import l2_normalize

LINKAGES = ("average", "complete", "single")


def cluster(vectors: np.ndarray, distance_threshold: float, linkage: str = "average") -> np.ndarray:
    """Cluster labels (0..k-1, numbered by first appearance) of L2-normalised ``vectors`` ``(n, dim)``.

    One vector is one cluster; no vectors give an empty array.
    """
    if linkage not in LINKAGES:
        raise ValueError(f"linkage must be one of {LINKAGES} (cosine distance), got {linkage!r}")
    if not 0.0 < distance_threshold < 2.0:
        raise ValueError(f"distance_threshold is a cosine distance in (0, 2), got {distance_threshold}")
    n = len(vectors)
    if n < 2:
        return np.zeros(n, dtype=int)
    from sklearn.cluster import AgglomerativeClustering

    raw = AgglomerativeClustering(
        n_clusters=None, distance_threshold=distance_threshold, metric="cosine", linkage=linkage
    ).fit_predict(np.asarray(vectors, dtype=np.float64))
    order: dict[int, int] = {}
    for label in raw:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in raw], dtype=int)


def centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """L2-normalised mean embedding of each cluster, shape ``(k, dim)``."""
    k = int(labels.max()) + 1 if len(labels) else 0
    return np.stack([l2_normalize(vectors[labels == c].mean(axis=0)) for c in range(k)]) if k else np.zeros((0, 0))


def similarity_to_centroid(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine similarity of each vector to its own cluster's centroid (1.0 for a cluster of one)."""
    cents = centroids(vectors, labels)
    return np.einsum("nd,nd->n", vectors, cents[labels]) if len(labels) else np.zeros(0)


def count_voices(partials: np.ndarray, distance_threshold: float, min_partials: int, linkage: str = "average") -> int:
    """Distinct voices in one utterance: clusters of its partial-window embeddings holding at least
    ``min_partials`` windows (a window that straddles a speaker change blends both voices and would otherwise
    count as a third); at least 1."""
    labels = cluster(partials, distance_threshold, linkage)
    if len(labels) == 0:
        return 1
    sizes = np.bincount(labels)
    return max(1, int(np.sum(sizes >= max(1, min_partials))))
