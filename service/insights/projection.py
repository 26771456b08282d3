"""The architecture map: configurations laid out in 2-D by their distance in the engine's
encoding, with clusters and the best region marked.

Classical multidimensional scaling of Euclidean distances between encoded configurations, which
equals projecting the centred encodings on their two principal axes: deterministic, one SVD of
an (n x dim) matrix with n bounded by the page's sample, and a basis other points (the pruned
candidates) can be placed in. Clusters: k-means on the 2-D layout (what the eye sees).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """``xy`` of the fitted points; ``place`` puts other encodings in the same plane."""

    xy: np.ndarray
    mean: np.ndarray
    axes: np.ndarray  # (dim, 2)
    explained: tuple[float, float]  # share of the encoding's variance on each axis

    def place(self, vectors: np.ndarray) -> np.ndarray:
        if len(vectors) == 0:
            return np.zeros((0, 2))
        return (vectors - self.mean) @ self.axes


def classical_mds(vectors: np.ndarray) -> Layout:
    """Two principal axes of the centred encodings, signs fixed so the layout is reproducible.

    >>> v = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.1]])
    >>> lay = classical_mds(v)
    >>> np.round(np.abs(lay.xy[:, 0]), 2).tolist(), lay.explained[0] > 0.99
    ([1.0, 0.0, 1.0], True)
    """
    vectors = np.asarray(vectors, dtype=float)
    n, dim = vectors.shape
    mean = vectors.mean(axis=0) if n else np.zeros(dim)
    centred = vectors - mean
    axes = np.zeros((dim, 2))
    explained = [0.0, 0.0]
    if n >= 2 and dim:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(2, len(s))
        axes[:, :k] = vt[:k].T
        for j in range(k):  # the largest loading positive: same data, same picture
            if axes[np.argmax(np.abs(axes[:, j])), j] < 0:
                axes[:, j] *= -1
        variance = float(np.sum(s ** 2))
        explained = [float(s[j] ** 2 / variance) if variance > 0 and j < k else 0.0
                     for j in range(2)]
    return Layout(centred @ axes, mean, axes, (explained[0], explained[1]))


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = 30
           ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and centres of ``k`` clusters (k-means++ seeding, Lloyd iterations).

    >>> pts = np.array([[0, 0], [0, 0.1], [5, 5], [5, 5.1]], dtype=float)
    >>> labels, centres = kmeans(pts, 2)
    >>> bool(labels[0] == labels[1] != labels[2] == labels[3])
    True
    """
    n = len(points)
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    centres = [points[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((points[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        if d2.sum() <= 0:
            break
        centres.append(points[rng.choice(n, p=d2 / d2.sum())])
    c = np.array(centres)
    labels = np.zeros(n, dtype=int)
    for _ in range(iterations):
        labels = np.argmin(((points[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        moved = np.array([points[labels == j].mean(axis=0) if np.any(labels == j) else c[j]
                          for j in range(len(c))])
        if np.allclose(moved, c):
            break
        c = moved
    return labels, c
