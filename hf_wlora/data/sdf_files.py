"""Load files of SDF samples (points with their signed distances) as `ShapeInstance`s.

Accepted formats:
  - `.npz` with `points` (N, 3) and `sdf` (N,) or (N, 1) (what `save_sdf_samples` writes);
  - `.npz` with `pos` and `neg`, each (M, 4) rows of `x, y, z, sdf`: the preprocessed ShapeNet sets published with
    DeepSDF (samples outside and inside the surface);
  - `.npy` of shape (N, 4), rows `x, y, z, sdf` (memory-mapped, so large files cost little RAM).
Coordinates are used as stored: they should already be normalised to the [-1, 1] cube the fields are trained on.
A file is refused (it is a bad item, see `load_sdf_samples`) when its samples cannot be that: coordinates beyond
`COORDINATE_LIMIT`, SDF values all of one sign (no surface), or an |sdf| larger than the diagonal of the samples'
bounding box (the surface lies between samples of opposite signs, so no true distance to it is larger; such values
are in other units than the points).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import BadItems, OnError, PathLike, ShapeCollection, ShapeInstance, read_folder, relative_id

logger = logging.getLogger(__name__)

SDF_EXTENSIONS: tuple[str, ...] = (".npz", ".npy")

# Largest |coordinate| accepted. Fields are trained and meshed in [-1, 1]^3; the margin admits DeepSDF's sets, whose
# shapes fill the ball of radius 1/1.03 and whose near-surface samples carry Gaussian noise (std ~0.07), so some
# rows lie a little outside the cube. Coordinates beyond it were never normalised (e.g. millimetres).
COORDINATE_LIMIT = 1.5

# np.load takes a file that starts with neither signature for pickled objects and, with allow_pickle=False, says
# to pass allow_pickle=True: advice never to follow for a data file, so such files are refused first.
_NPY_SIGNATURE = np.lib.format.MAGIC_PREFIX
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # the two an .npz (a zip archive) can start with, as np.load checks


def _check_signature(path: Path, npy: bool) -> None:
    with open(path, "rb") as file:
        head = file.read(len(_NPY_SIGNATURE))
    if npy and not head.startswith(_NPY_SIGNATURE):
        raise ValueError(f"{path}: not a numpy .npy array file (corrupt, or another format); re-save it with np.save")
    if not npy and not head.startswith(_ZIP_SIGNATURES):
        raise ValueError(
            f"{path}: not a numpy .npz archive of arrays (corrupt, or another format); re-save it with np.savez"
        )


def _check_samples(path: Path, points: np.ndarray, sdf: np.ndarray) -> None:
    """Refuse samples that cannot be an SDF in the fields' cube (see the module docstring)."""
    reach = float(np.abs(points).max())
    if reach > COORDINATE_LIMIT:
        raise ValueError(
            f"{path}: coordinates reach {reach:.4g}, outside [-{COORDINATE_LIMIT:g}, {COORDINATE_LIMIT:g}]^3 (the "
            "fields' cube [-1, 1]^3 with a margin for near-surface noise); normalise the shape into [-1, 1]^3 first"
        )
    low, high = float(sdf.min()), float(sdf.max())
    if low > 0 or high < 0:
        sign = "positive" if low > 0 else "negative"
        raise ValueError(
            f"{path}: every SDF value is {sign} ({low:.3g} to {high:.3g}), so the samples hold no surface; "
            "include samples from both sides of the surface"
        )
    diagonal = float(np.linalg.norm(points.max(0) - points.min(0)))
    largest = max(-low, high)
    if largest > diagonal * (1 + 1e-4) + 1e-6:  # slack for float32 rounding
        raise ValueError(
            f"{path}: |sdf| reaches {largest:.4g}, more than the {diagonal:.3g} diagonal of the samples' bounding "
            "box, which no distance to a surface lying between them can exceed; store SDF values in the same "
            "units as the points"
        )


def _rows(array: np.ndarray, path: PathLike, name: str) -> np.ndarray:
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{path}: {name} must have shape (N, 4) with rows x, y, z, sdf, got {array.shape}")
    return array


def read_sdf_file(path: PathLike, drop_nan_rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read one SDF sample file: (points (N, 3) float32, sdf (N,) float32).

    Args:
        path: A `.npz` or `.npy` file in one of the formats of the module docstring.
        drop_nan_rows: Drop rows with a NaN or infinite value (and log how many) instead of failing; the DeepSDF
            sets contain a few such rows, which DeepSDF's own loader also removes.

    Raises:
        ValueError: naming the file, for an unreadable file (not an .npz/.npy, or arrays of Python objects),
            unknown keys, wrong shapes, no rows, non-finite values (unless `drop_nan_rows`), or samples that cannot
            be an SDF in the fields' cube (see the module docstring).
    """
    path = Path(path)
    npy = path.suffix.lower() == ".npy"
    try:
        _check_signature(path, npy)
        if npy:
            rows = _rows(np.load(path, mmap_mode="r", allow_pickle=False), path, "the array")
            points, sdf = rows[:, :3], rows[:, 3]
        else:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
                if {"points", "sdf"} <= keys:
                    points, sdf = np.asarray(data["points"]), np.asarray(data["sdf"])
                    if sdf.ndim == 2 and sdf.shape[1] == 1:
                        sdf = sdf[:, 0]
                    if points.ndim != 2 or points.shape[1] != 3 or sdf.shape != (len(points),):
                        raise ValueError(f"{path}: need points (N, 3) and sdf (N,), got {points.shape} and {sdf.shape}")
                elif {"pos", "neg"} <= keys:
                    rows = np.concatenate([_rows(data["pos"], path, "pos"), _rows(data["neg"], path, "neg")])
                    points, sdf = rows[:, :3], rows[:, 3]
                else:
                    raise ValueError(
                        f"{path}: expected arrays 'points' and 'sdf', or 'pos' and 'neg'; found {sorted(keys)}"
                    )
    except ValueError as error:
        if str(error).startswith(str(path)):
            raise
        if "allow_pickle" in str(error):  # numpy's advice to unpickle must not reach the user
            raise ValueError(
                f"{path}: holds arrays of Python objects, which are never loaded (unpickling a file can run code); "
                "store numeric arrays"
            ) from error
        raise ValueError(f"{path}: cannot be read as an SDF sample file ({error})") from error
    except Exception as error:  # numpy and zipfile raise many types for corrupt files
        raise ValueError(f"{path}: cannot be read as an SDF sample file ({type(error).__name__}: {error})") from error

    finite = np.isfinite(points).all(1) & np.isfinite(sdf)
    if not finite.all():
        bad = int((~finite).sum())
        if not drop_nan_rows:
            raise ValueError(f"{path}: {bad} of {len(sdf)} rows contain NaN or infinite values")
        logger.warning("%s: dropped %d of %d rows with NaN or infinite values", path, bad, len(sdf))
        points, sdf = points[finite], sdf[finite]
    if len(sdf) == 0:
        raise ValueError(f"{path}: the file holds no samples")
    # float32 copies only when needed: a float32 .npy stays memory-mapped.
    points, sdf = np.asarray(points, dtype=np.float32), np.asarray(sdf, dtype=np.float32)
    _check_samples(path, points, sdf)
    return points, sdf


def save_sdf_samples(path: PathLike, points: np.ndarray, sdf: np.ndarray) -> None:
    """Write SDF samples as an `.npz` with `points` (N, 3) and `sdf` (N,) float32, readable by `load_sdf_samples`.

    This is how to precompute samples of large meshes once: `save_sdf_samples(path, *shape.sample(250_000))`.
    """
    points = np.asarray(points, dtype=np.float32)
    sdf = np.asarray(sdf, dtype=np.float32).reshape(-1)
    if points.ndim != 2 or points.shape[1] != 3 or len(sdf) != len(points):
        raise ValueError(f"need points (N, 3) and sdf (N,), got {points.shape} and {sdf.shape}")
    np.savez(path, points=points, sdf=sdf)


def load_sdf_samples(
    root: PathLike,
    on_error: OnError = "raise",
    drop_nan_rows: bool = False,
    extensions: Sequence[str] = SDF_EXTENSIONS,
) -> ShapeCollection:
    """Load every SDF sample file under `root` as a `ShapeInstance` holding stored samples.

    Args:
        root: `root/<class>/**/file.npz` (class = first-level subfolder, e.g. a ShapeNet synset folder of DeepSDF's
            `SdfSamples/ShapeNetV2/`), or files directly in `root` (a single class named after the folder). Ids are
            paths relative to `root`.
        on_error: `"raise"` (default) raises a `ValueError` on the first bad file (unreadable, wrong layout,
            NaN/inf values, no rows, coordinates or SDF values out of range, no surface); `"skip"` skips bad files,
            lists them in `.skipped` and logs a warning naming each.
        drop_nan_rows: Drop non-finite rows instead of treating the file as bad (see `read_sdf_file`).
        extensions: File extensions to load (case-insensitive).

    The shapes have no SDF function: `shape.sample(n, seed)` draws random rows, `shape.points`/`shape.values` hold
    them all.
    """
    bad_items = BadItems(on_error)
    root = Path(root)
    items, class_names = read_folder(
        root, extensions, bad_items, lambda path: read_sdf_file(path, drop_nan_rows), "Fix or remove the file"
    )
    shapes = [
        ShapeInstance(id=relative_id(path, root), label=label, points=points, values=sdf, source=str(path))
        for path, label, (points, sdf) in items
    ]
    bad_items.warn(root)
    return ShapeCollection(shapes, class_names, bad_items.skipped)
