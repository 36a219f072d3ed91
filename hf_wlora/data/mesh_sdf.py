"""Signed distance to a triangle mesh that need not be watertight, in plain numpy.

- Sign: the generalized winding number (Jacobson et al. 2013), the sum of the solid angles the triangles subtend
  at a point over 4 pi. It is 1 inside and 0 outside a closed, consistently oriented mesh, and degrades gracefully
  for real-world meshes with holes, cracks or duplicated faces (it stays near 1 deep inside and near 0 far
  outside), where ray-parity tests flip whole regions. A point is inside when |w| > 0.5; the absolute value also
  accepts meshes whose faces are all oriented inwards.
- Magnitude: the exact Euclidean distance to the nearest triangle (closest point on the plane when it falls inside
  the triangle, otherwise on the nearest edge).

Both are exact sums/minima over all (point, triangle) pairs, computed in chunks to bound memory: O(points x faces)
time. That is fine for the meshes of tests and demos (up to some thousands of faces and 10^5 points); for large
meshes, sample SDFs once and store them as SDF sample files (`save_sdf_samples`). `trimesh.proximity` would need the
optional `rtree` package, which is why it is not used.
"""

from __future__ import annotations

import numpy as np

# Pairs (points x faces) per chunk: large enough to amortise Python overhead, small enough that the ~40
# temporaries stay within a few hundred MB.
_PAIRS_PER_CHUNK = 1 << 13


class MeshSDF:
    """Callable signed distance (negative inside) of the triangle mesh (`vertices` (V, 3), `faces` (F, 3))."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        vertices = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise ValueError(f"faces must be a non-empty (F, 3) array, got shape {faces.shape}")
        v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
        self.num_faces = len(faces)
        # Per-face constants as coordinate columns (3, F): element-wise arithmetic on columns is faster in numpy
        # than reductions over a trailing axis of size 3.
        self._v = [v.T.copy() for v in (v0, v1, v2)]
        self._e = [e.T.copy() for e in (v1 - v0, v2 - v1, v0 - v2)]
        normal = np.cross(v1 - v0, v2 - v0)
        length = np.linalg.norm(normal, axis=-1)
        self._valid = length > 1e-12 * max(1.0, float(np.abs(vertices).max()) ** 2)
        unit = normal / np.where(self._valid, length, 1.0)[:, None]
        self._n = unit.T.copy()
        # cross(n, e_i) points from edge i into the triangle: a point projects inside iff it is on that side of
        # all three edges.
        self._m = [np.cross(unit, e.T).T.copy() for e in self._e]
        self._inv_e2 = [1.0 / np.maximum((e * e).sum(0), 1e-300) for e in self._e]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        winding, distance = self.winding_and_distance(points)
        return np.where(np.abs(winding) > 0.5, -distance, distance)

    def winding_number(self, points: np.ndarray) -> np.ndarray:
        """Generalized winding number (N,) at `points` (N, 3)."""
        return self.winding_and_distance(points)[0]

    def unsigned_distance(self, points: np.ndarray) -> np.ndarray:
        """Euclidean distance (N,) from `points` (N, 3) to the nearest triangle."""
        return self.winding_and_distance(points)[1]

    def winding_and_distance(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(winding number (N,), unsigned distance (N,)) at `points` (N, 3), sharing the per-pair work."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        winding = np.empty(len(points))
        distance = np.empty(len(points))
        step = max(1, _PAIRS_PER_CHUNK // self.num_faces)
        for start in range(0, len(points), step):
            chunk = points[start : start + step]
            winding[start : start + step], distance[start : start + step] = self._chunk(chunk)
        return winding, distance

    def _chunk(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # a, b, c: vectors from each point to the triangle's vertices, as (P, F) arrays per coordinate.
        a, b, c = ([v[i][None, :] - points[:, i : i + 1] for i in range(3)] for v in self._v)
        la, lb, lc = (np.sqrt(u[0] * u[0] + u[1] * u[1] + u[2] * u[2]) for u in (a, b, c))
        # Solid angle of each triangle (Van Oosterom & Strackee 1983).
        det = (
            a[0] * (b[1] * c[2] - b[2] * c[1]) + a[1] * (b[2] * c[0] - b[0] * c[2]) + a[2] * (b[0] * c[1] - b[1] * c[0])
        )
        ab = a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
        bc = b[0] * c[0] + b[1] * c[1] + b[2] * c[2]
        ca = c[0] * a[0] + c[1] * a[1] + c[2] * a[2]
        winding = np.arctan2(det, la * lb * lc + ab * lc + bc * la + ca * lb).sum(1) / (2.0 * np.pi)

        # Squared distance to each triangle: to its plane where the point projects inside, else to the nearest edge.
        inside = self._valid[None, :]
        for m, u in zip(self._m, (a, b, c), strict=True):
            inside = inside & (m[0] * u[0] + m[1] * u[1] + m[2] * u[2] <= 0.0)
        plane = self._n[0] * a[0] + self._n[1] * a[1] + self._n[2] * a[2]
        edge2 = None
        for e, inv, u in zip(self._e, self._inv_e2, (a, b, c), strict=True):
            # Vector from the point to the closest point of the edge that starts at vertex u: u + t e.
            t = np.clip(-(u[0] * e[0] + u[1] * e[1] + u[2] * e[2]) * inv, 0.0, 1.0)
            dx, dy, dz = u[0] + t * e[0], u[1] + t * e[1], u[2] + t * e[2]
            d2 = dx * dx + dy * dy + dz * dz
            edge2 = d2 if edge2 is None else np.minimum(edge2, d2)
        dist2 = np.where(inside, plane * plane, edge2)
        return winding, np.sqrt(dist2.min(1))
