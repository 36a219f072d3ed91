"""Exact signed distance functions of 3-D primitives (after Inigo Quilez's distance functions), vectorised in numpy.

Each primitive maps points (N, 3) to signed distances (N,), negative inside, and knows a bounding sphere so that
shapes made of primitives can be normalised into the unit ball. Primitives with a `rotation` (a 3x3 matrix whose
columns are the primitive's local axes in world coordinates) are placed by a rigid motion, which keeps the distance
exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


def _columns(points: np.ndarray) -> Columns:
    # Work on x, y, z as separate contiguous (N,) arrays: numpy reductions over a trailing axis of size 3 are several
    # times slower than plain element-wise arithmetic on columns.
    x, y, z = np.ascontiguousarray(np.asarray(points, dtype=np.float64).T)
    return x, y, z


def rotation_x(degrees: float) -> np.ndarray:
    """Rotation matrix about the x axis."""
    a = np.deg2rad(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def rotation_y(degrees: float) -> np.ndarray:
    """Rotation matrix about the y axis (the up axis of the built-in shapes)."""
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rotation_z(degrees: float) -> np.ndarray:
    """Rotation matrix about the z axis."""
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


@dataclass(frozen=True, eq=False)
class Primitive:
    """Base class: a primitive in a local frame placed at `center` with orientation `rotation`.

    Subclasses implement `distance(x, y, z)` on coordinate columns; calling a primitive on points (N, 3) returns
    the signed distances (N,).
    """

    center: tuple[float, float, float]

    def _local(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> Columns:
        cx, cy, cz = self.center
        dx, dy, dz = x - cx, y - cy, z - cz
        rotation = getattr(self, "rotation", None)
        if rotation is None:
            return dx, dy, dz
        # world = R @ local + center, so local = R^T (world - center).
        r = np.asarray(rotation, dtype=np.float64)
        return (
            r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
            r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
            r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
        )

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.distance(*_columns(points))

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Signed distance at the points with coordinate columns `x`, `y`, `z` (each (N,))."""
        raise NotImplementedError

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """(centre, radius) of a sphere containing the primitive."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Sphere(Primitive):
    radius: float

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        dx, dy, dz = self._local(x, y, z)
        return np.sqrt(dx * dx + dy * dy + dz * dz) - self.radius

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, dtype=np.float64), self.radius


@dataclass(frozen=True, eq=False)
class Box(Primitive):
    """Box with half extents `half_size`, optionally with edges rounded by `radius` (inside the same extents)."""

    half_size: tuple[float, float, float]
    radius: float = 0.0
    rotation: np.ndarray | None = None

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        lx, ly, lz = self._local(x, y, z)
        bx, by, bz = (h - self.radius for h in self.half_size)
        qx, qy, qz = np.abs(lx) - bx, np.abs(ly) - by, np.abs(lz) - bz
        ox, oy, oz = np.maximum(qx, 0.0), np.maximum(qy, 0.0), np.maximum(qz, 0.0)
        outside = np.sqrt(ox * ox + oy * oy + oz * oz)
        inside = np.minimum(np.maximum(qx, np.maximum(qy, qz)), 0.0)
        return outside + inside - self.radius

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, dtype=np.float64), float(np.linalg.norm(self.half_size))


def _segment_projection(x: np.ndarray, y: np.ndarray, z: np.ndarray, a: tuple, b: tuple) -> tuple:
    """(pa, ba, pa . ba, ba . ba) for points p and the segment from a to b."""
    pax, pay, paz = x - a[0], y - a[1], z - a[2]
    ba = (b[0] - a[0], b[1] - a[1], b[2] - a[2])
    paba = pax * ba[0] + pay * ba[1] + paz * ba[2]
    baba = ba[0] * ba[0] + ba[1] * ba[1] + ba[2] * ba[2]
    return (pax, pay, paz), ba, paba, baba


@dataclass(frozen=True, eq=False)
class Capsule(Primitive):
    """Segment from `center` to `end` swept by a ball of `radius`."""

    end: tuple[float, float, float]
    radius: float

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        (pax, pay, paz), ba, paba, baba = _segment_projection(x, y, z, self.center, self.end)
        h = np.clip(paba / baba, 0.0, 1.0)
        dx, dy, dz = pax - h * ba[0], pay - h * ba[1], paz - h * ba[2]
        return np.sqrt(dx * dx + dy * dy + dz * dz) - self.radius

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        a, b = np.asarray(self.center, dtype=np.float64), np.asarray(self.end, dtype=np.float64)
        return (a + b) / 2, float(np.linalg.norm(b - a) / 2 + self.radius)


@dataclass(frozen=True, eq=False)
class Cylinder(Primitive):
    """Capped cylinder of `radius` whose axis runs from `center` to `end`."""

    end: tuple[float, float, float]
    radius: float

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        (pax, pay, paz), ba, paba, baba = _segment_projection(x, y, z, self.center, self.end)
        # Distance from the axis and along it, both scaled by |ba|^2 to avoid divisions until the end.
        rx, ry, rz = pax * baba - paba * ba[0], pay * baba - paba * ba[1], paz * baba - paba * ba[2]
        radial = np.sqrt(rx * rx + ry * ry + rz * rz) - self.radius * baba
        axial = np.abs(paba - baba * 0.5) - baba * 0.5
        r2, a2 = radial * radial, axial * axial * baba
        d = np.where(
            np.maximum(radial, axial) < 0.0,
            -np.minimum(r2, a2),
            np.where(radial > 0.0, r2, 0.0) + np.where(axial > 0.0, a2, 0.0),
        )
        return np.sign(d) * np.sqrt(np.abs(d)) / baba

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        a, b = np.asarray(self.center, dtype=np.float64), np.asarray(self.end, dtype=np.float64)
        return (a + b) / 2, float(np.hypot(np.linalg.norm(b - a) / 2, self.radius))


@dataclass(frozen=True, eq=False)
class Torus(Primitive):
    """Torus around the local y axis: ring of radius `major`, tube of radius `minor`."""

    major: float
    minor: float
    rotation: np.ndarray | None = None

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        lx, ly, lz = self._local(x, y, z)
        ring = np.sqrt(lx * lx + lz * lz) - self.major
        return np.sqrt(ring * ring + ly * ly) - self.minor

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, dtype=np.float64), self.major + self.minor


@dataclass(frozen=True, eq=False)
class CappedCone(Primitive):
    """Truncated cone along the local y axis: radius `bottom` at y = -half_height, `top` at y = +half_height."""

    half_height: float
    bottom: float
    top: float
    rotation: np.ndarray | None = None

    def distance(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        lx, qy, lz = self._local(x, y, z)
        qx = np.sqrt(lx * lx + lz * lz)
        h, r1, r2 = self.half_height, self.bottom, self.top
        k2x, k2y = r2 - r1, 2.0 * h
        # ca: offset to the nearest cap disc; cb: offset to the nearest point of the slanted side segment.
        cax = qx - np.minimum(qx, np.where(qy < 0.0, r1, r2))
        cay = np.abs(qy) - h
        t = np.clip(((r2 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
        cbx, cby = qx - r2 + k2x * t, qy - h + k2y * t
        sign = np.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
        return sign * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        return np.asarray(self.center, dtype=np.float64), float(np.hypot(self.half_height, max(self.bottom, self.top)))
