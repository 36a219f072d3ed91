"""`GlyphImages`: a built-in, generated 2-D image set of the ten digits drawn as strokes.

Nothing is downloaded and no font file is needed: each digit is a few polylines and arcs defined below. Every
instance varies its stroke width, scale, aspect, rotation, shear, translation and its foreground and background
colours. Strokes are rendered with analytic anti-aliasing: the distance from each pixel centre to the strokes gives
the pixel's coverage with a one-pixel linear ramp, so images are smooth functions a neural field can fit.
"""

from __future__ import annotations

import numpy as np

from .base import ImageInstance, InstanceDataset, balanced_label, instance_rng

GLYPH_CLASS_NAMES: tuple[str, ...] = tuple(str(d) for d in range(10))

# Random streams of a glyph instance (see base.instance_rng).
_STYLE_STREAM = 0x676C7970  # "glyp"
_LABEL_STREAM = 0x6C61626C  # "labl"


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, n: int = 12) -> np.ndarray:
    angles = np.deg2rad(np.linspace(start, end, n))
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=-1)


def _line(*points: tuple[float, float]) -> np.ndarray:
    return np.asarray(points, dtype=np.float64)


# Strokes of each digit as polylines in a glyph box of about [-0.45, 0.45] x [-0.78, 0.78], y pointing up.
_POLYLINES: dict[int, list[np.ndarray]] = {
    0: [_arc(0, 0, 0.42, 0.76, 0, 360, 24)],
    1: [_line((-0.22, 0.5), (0.02, 0.78), (0.02, -0.78)), _line((-0.25, -0.78), (0.3, -0.78))],
    2: [np.concatenate([_arc(0, 0.38, 0.4, 0.38, 160, -40), _line((-0.45, -0.78), (0.45, -0.78))])],
    3: [_arc(0, 0.4, 0.38, 0.36, 150, -90), _arc(0, -0.38, 0.42, 0.4, 90, -150)],
    4: [_line((0.2, -0.78), (0.2, 0.78), (-0.45, -0.28), (0.45, -0.28))],
    5: [np.concatenate([_line((0.38, 0.78), (-0.3, 0.78), (-0.36, 0.05)), _arc(0, -0.33, 0.42, 0.43, 140, -150)])],
    6: [_arc(0, -0.36, 0.4, 0.42, 0, 360, 20), _line((0.28, 0.78), (-0.15, 0.35), (-0.4, -0.3))],
    7: [_line((-0.45, 0.78), (0.45, 0.78), (-0.12, -0.78))],
    8: [_arc(0, 0.4, 0.33, 0.36, 0, 360, 20), _arc(0, -0.37, 0.4, 0.41, 0, 360, 20)],
    9: [_arc(0, 0.36, 0.4, 0.42, 0, 360, 20), _line((0.4, 0.36), (0.32, -0.2), (-0.15, -0.78))],
}

# (start, end) of every segment of each digit: (S, 2, 2).
_SEGMENTS: dict[int, np.ndarray] = {
    digit: np.concatenate([np.stack([p[:-1], p[1:]], axis=1) for p in polylines])
    for digit, polylines in _POLYLINES.items()
}


def _segment_distance(points: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Distance (N,) from each point (N, 2) to the nearest of the segments (S, 2, 2)."""
    # x and y are kept as separate (N, S) arrays: reductions over a trailing axis of size 2 are slow in numpy.
    ax, ay = segments[:, 0, 0], segments[:, 0, 1]
    abx, aby = segments[:, 1, 0] - ax, segments[:, 1, 1] - ay
    inv_len2 = 1.0 / np.maximum(abx * abx + aby * aby, 1e-12)
    apx = points[:, :1] - ax
    apy = points[:, 1:] - ay
    t = np.clip((apx * abx + apy * aby) * inv_len2, 0.0, 1.0)
    apx -= t * abx
    apy -= t * aby
    return np.sqrt((apx * apx + apy * apy).min(axis=1))


def _random_colours(rng: np.random.Generator, min_distance: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    # Rejection keeps the glyph visible; it is deterministic because the stream is the instance's own.
    for _ in range(100):
        background, foreground = rng.random(3), rng.random(3)
        if np.linalg.norm(foreground - background) >= min_distance:
            break
    else:
        background, foreground = np.zeros(3), np.ones(3)
    return background, foreground


def render_glyph(digit: int, resolution: int, rng: np.random.Generator) -> np.ndarray:
    """Render `digit` (0-9) with a random style drawn from `rng`: float32 (resolution, resolution, 3) in [0, 1]."""
    if digit not in _SEGMENTS:
        raise ValueError(f"digit must be in 0..9, got {digit}")
    scale = rng.uniform(0.72, 0.9)
    aspect = rng.uniform(0.85, 1.15)
    angle = np.deg2rad(rng.uniform(-15.0, 15.0))
    shear = rng.uniform(-0.2, 0.2)
    shift = rng.uniform(-0.1, 0.1, size=2)
    half_width = rng.uniform(0.045, 0.085)
    background, foreground = _random_colours(rng)

    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([scale * aspect, scale])
    affine = np.diag([1.0, -1.0]) @ affine  # glyph y points up, image y points down
    # An affine map sends segments to segments, so transform the strokes and measure distances in image space:
    # the stroke width stays uniform whatever the shear.
    segments = _SEGMENTS[digit] @ affine.T + shift

    # Coverage is zero farther than half_width + one pixel from the strokes: only evaluate the pixels inside the
    # strokes' bounding box grown by that margin (about a third of the image), which is what makes this fast.
    pixel = 2.0 / resolution
    margin = half_width + pixel
    centres = (2.0 * np.arange(resolution) + 1.0) / resolution - 1.0  # pixel centres, as in `pixel_centers`
    lo, hi = segments.reshape(-1, 2).min(0) - margin, segments.reshape(-1, 2).max(0) + margin
    c0, c1 = np.searchsorted(centres, [lo[0], hi[0]])
    r0, r1 = np.searchsorted(centres, [lo[1], hi[1]])
    coverage = np.zeros((resolution, resolution), dtype=np.float32)
    if c1 > c0 and r1 > r0:
        grid_y, grid_x = np.meshgrid(centres[r0:r1], centres[c0:c1], indexing="ij")
        points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=-1).astype(np.float32)
        distance = _segment_distance(points, segments.astype(np.float32))
        coverage[r0:r1, c0:c1] = np.clip(0.5 + (half_width - distance) / pixel, 0.0, 1.0).reshape(r1 - r0, c1 - c0)
    image = background.astype(np.float32) + coverage[..., None] * (foreground - background).astype(np.float32)
    return image


class GlyphImages(InstanceDataset[ImageInstance]):
    """Generated RGB images of the ten digits, `num_instances` of them at `resolution` x `resolution`.

    Instance i is a function of (seed, i) only: the same whatever `num_instances`, and computed on access without
    generating the others. Labels are balanced: each aligned block of ten instances holds every digit once.

    Example:
        >>> data = GlyphImages(num_instances=200, resolution=32, seed=0)
        >>> item = data[0]  # ImageInstance(id="glyphs-s0-000000", label=..., image=float32 (32, 32, 3))
    """

    def __init__(self, num_instances: int = 1000, resolution: int = 32, seed: int = 0) -> None:
        if num_instances < 0 or resolution < 1 or seed < 0:
            raise ValueError(
                f"need num_instances >= 0, resolution >= 1 and seed >= 0, got {num_instances}, {resolution}, {seed}"
            )
        self.num_instances = num_instances
        self.resolution = resolution
        self.seed = seed
        self.class_names = list(GLYPH_CLASS_NAMES)
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return self.num_instances

    def label_of(self, index: int) -> int:
        """Label of instance `index`, without rendering it."""
        return balanced_label(self.seed, index, len(GLYPH_CLASS_NAMES), _LABEL_STREAM)

    def _get(self, index: int) -> ImageInstance:
        label = self.label_of(index)
        image = render_glyph(label, self.resolution, instance_rng(self.seed, index, _STYLE_STREAM))
        return ImageInstance(id=f"glyphs-s{self.seed}-{index:06d}", label=label, image=image)

    @property
    def labels(self) -> np.ndarray:
        return np.array([self.label_of(i) for i in range(len(self))], dtype=np.int64)

    def __repr__(self) -> str:
        return f"GlyphImages(num_instances={self.num_instances}, resolution={self.resolution}, seed={self.seed})"
