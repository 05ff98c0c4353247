"""Cosine similarity with ``np.linalg.norm``, and a 2-D rotation built with ``np.array``."""

# ruff: noqa: F821

import numpy as np


def cosine_similarity(a: "D", b: "D"):
    dot = np.dot(a, b)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return dot / norms


def pairwise_cosine(A: "N, D", B: "M, D"):
    A_unit = A / np.linalg.norm(A, axis=1, keepdims=True)
    B_unit = B / np.linalg.norm(B, axis=1, keepdims=True)
    return A_unit @ B_unit.T


def rotate(points: "N, 2", theta: float):
    c = np.cos(theta)
    s = np.sin(theta)
    R = np.array([[c, -s], [s, c]])
    return points @ R.T
