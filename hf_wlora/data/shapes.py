"""`ProceduralShapes`: a built-in, generated set of 3-D shapes in ten categories, with exact signed distances.

Each shape is a union of primitives (boxes, rounded boxes, cylinders, capsules, spheres, tori, capped cones; see
`primitives.py`) with proportions drawn from the instance's own random stream, then centred and scaled uniformly to
lie inside the ball of radius 0.9 (so in [-0.9, 0.9]^3, with a margin inside the [-1, 1]^3 cube fields are
trained on). Shapes are upright (+y up) and face +z, like aligned ShapeNet models.

What "exact" means here: the SDF of a union is the `min` of the primitives' exact SDFs. That is the exact Euclidean
distance everywhere outside the shape, its sign is exact everywhere, and its zero set is exactly the surface. Inside,
where primitives overlap, it is a bound: |sdf| never exceeds the true distance to the surface (it is the depth
inside the deepest primitive). Uniform scaling, s * f(x / s), keeps all of this.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .base import InstanceDataset, ShapeInstance, balanced_label, instance_rng
from .primitives import Box, CappedCone, Capsule, Cylinder, Primitive, Sphere, Torus, rotation_x, rotation_y

SHAPE_CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "bench",
    "bottle",
    "chair",
    "lamp",
    "mug",
    "rocket",
    "shelf",
    "sofa",
    "table",
)

# Random streams of a shape instance (see base.instance_rng).
_SHAPE_STREAM = 0x73686170  # "shap"
_LABEL_STREAM = 0x736C626C  # "slbl"
_CHUNK = 8192


class PrimitiveUnion:
    """Signed distance of a union of primitives, normalised into the ball of radius `radius`.

    Calling it maps points (N, 3) to signed distances (N,) (see the module docstring for exactness). The shape in
    world coordinates is `scale * (raw shape - offset)`, where the raw shape is the union of `primitives`.
    """

    def __init__(self, primitives: list[Primitive], radius: float = 0.9) -> None:
        if not primitives:
            raise ValueError("a shape needs at least one primitive")
        self.primitives = list(primitives)
        spheres = [p.bounding_sphere() for p in self.primitives]
        lo = np.min([c - r for c, r in spheres], axis=0)
        hi = np.max([c + r for c, r in spheres], axis=0)
        # Centre the bounding box, then scale so that every primitive's bounding sphere fits in the ball.
        self.offset = (lo + hi) / 2
        extent = max(np.linalg.norm(c - self.offset) + r for c, r in spheres)
        self.scale = radius / extent

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        out = np.empty(len(points), dtype=np.float64)
        # Chunks keep every temporary array small enough to be recycled by the allocator instead of being fresh
        # memory each time, which measured 1.5-2x faster than one pass over 10^5 points.
        for start in range(0, len(points), _CHUNK):
            chunk = points[start : start + _CHUNK]
            x, y, z = (chunk[:, i] / self.scale + self.offset[i] for i in range(3))
            values = self.primitives[0].distance(x, y, z)
            for primitive in self.primitives[1:]:
                np.minimum(values, primitive.distance(x, y, z), out=values)
            out[start : start + _CHUNK] = values * self.scale
        return out

    def to_world(self, raw_points: np.ndarray) -> np.ndarray:
        """Map points of the raw (unnormalised) primitives to the normalised shape's coordinates."""
        return (np.asarray(raw_points, dtype=np.float64) - self.offset) * self.scale


# --- categories: each builder draws the proportions of one instance from `rng` and returns its primitives. ---


def _airplane(rng: np.random.Generator) -> list[Primitive]:
    length, body = rng.uniform(2.4, 3.4), rng.uniform(0.14, 0.22)
    span, chord, sweep = rng.uniform(1.1, 1.7), rng.uniform(0.3, 0.5), rng.uniform(0.0, 30.0)
    wing_x = rng.uniform(-0.15, 0.25)
    parts: list[Primitive] = [Capsule((-length / 2, 0, 0), (length / 2, 0, 0), body)]
    for side in (-1, 1):  # swept wings: each half is a thin box rotated about y around its root
        rotation = rotation_y(side * sweep)
        root = np.array([wing_x, -0.3 * body, 0.0])
        center = root + rotation @ np.array([0.0, 0.0, side * span / 2])
        parts.append(Box(tuple(center), (chord / 2, 0.03, span / 2), 0.015, rotation))
    tail_x, fin = -length / 2 + 0.2, rng.uniform(0.35, 0.6)
    parts.append(Box((tail_x, body + fin / 2 - 0.05, 0), (0.18, fin / 2, 0.025), 0.01))
    parts.append(Box((tail_x, 0.05, 0), (0.15, 0.025, rng.uniform(0.4, 0.7)), 0.01))
    if rng.random() < 0.5:  # engines under the wings
        offset = rng.uniform(0.4, 0.7) * span
        for side in (-1, 1):
            z = side * offset * np.cos(np.deg2rad(sweep))
            x = wing_x - offset * np.sin(np.deg2rad(sweep)) + 0.1
            parts.append(Cylinder((x - 0.25, -0.25, z), (x + 0.25, -0.25, z), rng.uniform(0.08, 0.12)))
    return parts


def _bench(rng: np.random.Generator) -> list[Primitive]:
    width, depth, height = rng.uniform(1.6, 2.4), rng.uniform(0.35, 0.55), rng.uniform(0.4, 0.55)
    seat, panel = rng.uniform(0.05, 0.1), rng.uniform(0.05, 0.1)
    inset = rng.uniform(0.05, 0.3)
    parts: list[Primitive] = [Box((0, height - seat / 2, 0), (width / 2, seat / 2, depth / 2), 0.01)]
    for side in (-1, 1):  # two slab legs across the depth
        x = side * (width / 2 - inset - panel / 2)
        parts.append(Box((x, (height - seat) / 2, 0), (panel / 2, (height - seat) / 2, depth / 2 * 0.9)))
    if rng.random() < 0.5:  # a stretcher between the legs
        parts.append(Box((0, height * 0.3, 0), (width / 2 - inset, 0.03, 0.03)))
    return parts


def _bottle(rng: np.random.Generator) -> list[Primitive]:
    radius, body = rng.uniform(0.25, 0.4), rng.uniform(0.8, 1.3)
    shoulder, neck_r, neck = rng.uniform(0.15, 0.35), rng.uniform(0.08, 0.13), rng.uniform(0.2, 0.4)
    cap = rng.uniform(0.06, 0.12)
    top = body + shoulder
    return [
        Cylinder((0, 0, 0), (0, body, 0), radius),
        CappedCone((0, body + shoulder / 2, 0), shoulder / 2, radius, neck_r),
        Cylinder((0, top - 0.01, 0), (0, top + neck, 0), neck_r),
        Cylinder((0, top + neck, 0), (0, top + neck + cap, 0), neck_r + 0.02),
    ]


def _chair(rng: np.random.Generator) -> list[Primitive]:
    width, depth, height = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1)
    seat, leg, back, back_t = rng.uniform(0.08, 0.14), rng.uniform(0.06, 0.12), rng.uniform(0.7, 1.2), 0.08
    parts: list[Primitive] = [Box((0, height - seat / 2, 0), (width / 2, seat / 2, depth / 2), 0.02)]
    round_legs = rng.random() < 0.5
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * (width / 2 - leg / 2), sz * (depth / 2 - leg / 2)
            if round_legs:
                parts.append(Cylinder((x, 0, z), (x, height - seat, z), leg / 2))
            else:
                parts.append(Box((x, (height - seat) / 2, z), (leg / 2, (height - seat) / 2, leg / 2)))
    tilt = rotation_x(-rng.uniform(0.0, 12.0))  # backrest leaning back (about its bottom edge)
    bottom = np.array([0.0, height, -depth / 2 + back_t / 2])
    center = bottom + tilt @ np.array([0.0, back / 2, 0.0])
    parts.append(Box(tuple(center), (width / 2, back / 2, back_t / 2), 0.02, tilt))
    return parts


def _lamp(rng: np.random.Generator) -> list[Primitive]:
    base_r, base_h, pole_h = rng.uniform(0.25, 0.4), rng.uniform(0.04, 0.08), rng.uniform(1.0, 1.6)
    pole_r, lean = rng.uniform(0.025, 0.045), rng.uniform(-0.3, 0.3)
    shade_h, shade_bottom, shade_top = rng.uniform(0.15, 0.25), rng.uniform(0.3, 0.45), rng.uniform(0.1, 0.2)
    top = np.array([lean, base_h + pole_h, 0.0])
    return [
        Cylinder((0, 0, 0), (0, base_h, 0), base_r),
        Capsule((0, base_h, 0), tuple(top), pole_r),
        CappedCone(tuple(top + np.array([0, shade_h * 0.5, 0])), shade_h, shade_bottom, shade_top),
        Sphere(tuple(top), pole_r * 2.0),
    ]


def _mug(rng: np.random.Generator) -> list[Primitive]:
    radius, height = rng.uniform(0.35, 0.5), rng.uniform(0.7, 1.1)
    major, minor = rng.uniform(0.2, 0.3) * height, rng.uniform(0.04, 0.07)
    # The handle is a torus standing in the xy plane (its axis along z), half sunk into the body.
    handle = Torus((radius + major * 0.6, height / 2, 0), major, minor, rotation_x(90))
    return [Cylinder((0, 0, 0), (0, height, 0), radius), handle]


def _rocket(rng: np.random.Generator) -> list[Primitive]:
    radius, length, nose = rng.uniform(0.18, 0.3), rng.uniform(1.4, 2.2), rng.uniform(0.35, 0.6)
    fin_span, fin_h, count = rng.uniform(0.2, 0.35), rng.uniform(0.3, 0.5), int(rng.integers(3, 5))
    phase = rng.uniform(0, 360 / count)
    parts: list[Primitive] = [
        Cylinder((0, 0, 0), (0, length, 0), radius),
        CappedCone((0, length + nose / 2, 0), nose / 2, radius, 0.02),
        CappedCone((0, -0.06, 0), 0.06, radius * 0.6, radius * 0.8),  # nozzle
    ]
    for k in range(count):
        rotation = rotation_y(phase + 360.0 * k / count)
        center = rotation @ np.array([radius + fin_span / 2 - 0.02, fin_h / 2, 0.0])
        parts.append(Box(tuple(center), (fin_span / 2, fin_h / 2, 0.025), 0.01, rotation))
    return parts


def _shelf(rng: np.random.Generator) -> list[Primitive]:
    width, height, depth = rng.uniform(0.8, 1.4), rng.uniform(1.4, 2.2), rng.uniform(0.3, 0.45)
    board, count = rng.uniform(0.04, 0.07), int(rng.integers(3, 6))
    parts: list[Primitive] = []
    for side in (-1, 1):
        parts.append(Box((side * (width / 2 - board / 2), height / 2, 0), (board / 2, height / 2, depth / 2)))
    for y in np.linspace(board / 2, height - board / 2, count):
        parts.append(Box((0, y, 0), (width / 2, board / 2, depth / 2)))
    if rng.random() < 0.5:
        parts.append(Box((0, height / 2, -depth / 2 + 0.015), (width / 2, height / 2, 0.015)))
    return parts


def _sofa(rng: np.random.Generator) -> list[Primitive]:
    width, depth, base = rng.uniform(1.8, 2.6), rng.uniform(0.8, 1.0), rng.uniform(0.35, 0.5)
    back, back_t = rng.uniform(0.4, 0.6), rng.uniform(0.2, 0.3)
    arm_t, arm = rng.uniform(0.15, 0.25), rng.uniform(0.2, 0.35)
    r = 0.06
    parts: list[Primitive] = [
        Box((0, base / 2, 0), (width / 2, base / 2, depth / 2), r),
        Box((0, base + back / 2 - r, -depth / 2 + back_t / 2), (width / 2, back / 2 + r, back_t / 2), r),
    ]
    for side in (-1, 1):
        x = side * (width / 2 - arm_t / 2)
        parts.append(Box((x, (base + arm) / 2, 0), (arm_t / 2, (base + arm) / 2, depth / 2), r))
    return parts


def _table(rng: np.random.Generator) -> list[Primitive]:
    width, depth, height = rng.uniform(1.2, 2.0), rng.uniform(0.7, 1.2), rng.uniform(0.75, 1.0)
    top = rng.uniform(0.05, 0.1)
    parts: list[Primitive] = [Box((0, height - top / 2, 0), (width / 2, top / 2, depth / 2), 0.02)]
    if rng.random() < 0.7:  # four legs
        leg, inset = rng.uniform(0.04, 0.08), rng.uniform(0.05, 0.15)
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (width / 2 - inset), sz * (depth / 2 - inset)
                parts.append(Cylinder((x, 0, z), (x, height - top, z), leg))
    else:  # pedestal on a round foot
        parts.append(Cylinder((0, 0, 0), (0, height - top, 0), rng.uniform(0.06, 0.12)))
        parts.append(Cylinder((0, 0, 0), (0, 0.05, 0), rng.uniform(0.3, 0.45) * min(width, depth)))
    return parts


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Primitive]]] = {
    "airplane": _airplane,
    "bench": _bench,
    "bottle": _bottle,
    "chair": _chair,
    "lamp": _lamp,
    "mug": _mug,
    "rocket": _rocket,
    "shelf": _shelf,
    "sofa": _sofa,
    "table": _table,
}


def make_shape(category: str, rng: np.random.Generator, radius: float = 0.9) -> PrimitiveUnion:
    """A random shape of `category` (one of `SHAPE_CLASS_NAMES`), normalised into the ball of `radius`."""
    if category not in _BUILDERS:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(SHAPE_CLASS_NAMES)}")
    return PrimitiveUnion(_BUILDERS[category](rng), radius)


class ProceduralShapes(InstanceDataset[ShapeInstance]):
    """Generated 3-D shapes in ten categories (`SHAPE_CLASS_NAMES`), each a `ShapeInstance` with an exact SDF.

    Instance i is a function of (seed, i) only: the same whatever `num_instances`, built on access without building
    the others. Labels are balanced: each aligned block of ten instances holds every category once.

    Example:
        >>> shapes = ProceduralShapes(num_instances=100, seed=0)
        >>> shape = shapes[0]
        >>> shape.sdf(points)  # (N,) for points (N, 3); negative inside
        >>> points, sdf = shape.sample(16384, seed=0)
    """

    def __init__(self, num_instances: int = 1000, seed: int = 0, radius: float = 0.9) -> None:
        if num_instances < 0 or seed < 0 or not 0 < radius <= 1:
            raise ValueError(
                f"need num_instances >= 0, seed >= 0 and 0 < radius <= 1, got {num_instances}, {seed}, {radius}"
            )
        self.num_instances = num_instances
        self.seed = seed
        self.radius = radius
        self.class_names = list(SHAPE_CLASS_NAMES)
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return self.num_instances

    def label_of(self, index: int) -> int:
        """Label of instance `index`, without building it."""
        return balanced_label(self.seed, index, len(SHAPE_CLASS_NAMES), _LABEL_STREAM)

    def _get(self, index: int) -> ShapeInstance:
        label = self.label_of(index)
        sdf_fn = make_shape(SHAPE_CLASS_NAMES[label], instance_rng(self.seed, index, _SHAPE_STREAM), self.radius)
        return ShapeInstance(id=f"shapes-s{self.seed}-{index:06d}", label=label, sdf_fn=sdf_fn)

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.label_of(i) for i in range(len(self))], dtype=np.int64)

    def __repr__(self) -> str:
        return f"ProceduralShapes(num_instances={self.num_instances}, seed={self.seed}, radius={self.radius})"
