"""The common interface of every data source: instances, data sets, and the handling of bad items.

Stage 1 only ever sees `ImageInstance`s and `ShapeInstance`s inside an `InstanceDataset`, whether they were generated
(`GlyphImages`, `ProceduralShapes`) or read from an image folder, a `datasets` data set, a mesh folder or SDF sample
files. So later stages never care where data came from.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

if TYPE_CHECKING:
    from .sampling import SeedLike

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
PathLike = str | os.PathLike

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class ImageInstance:
    """One 2-D instance: a float32 RGB image of shape (H, W, 3) with values in [0, 1].

    Attributes:
        id: Stable identifier (the same on every run for the same source and options).
        label: Class index into the data set's `class_names`.
        image: float32 array (H, W, 3) in [0, 1]; row 0 is the top of the image.
    """

    id: str
    label: int
    image: np.ndarray

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(eq=False)
class ShapeInstance:
    """One 3-D instance, described by its signed distance function (negative inside) in [-1, 1]^3.

    A shape carries at least one of:
      - `sdf_fn`: a callable mapping points (N, 3) to signed distances (N,), so it can be evaluated anywhere
        (built-in procedural shapes, meshes);
      - `points` / `values`: stored SDF samples (SDF sample files), which are all that is known about the shape.
    `mesh` holds the normalised `trimesh.Trimesh` when the shape came from a mesh file (used for area-weighted
    surface sampling and by metrics).

    Use `sample(num_points, seed)` to get (points, sdf) training pairs in the same way for every source.
    """

    id: str
    label: int
    sdf_fn: Callable[[np.ndarray], np.ndarray] | None = None
    points: np.ndarray | None = None
    values: np.ndarray | None = None
    mesh: Any = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.sdf_fn is None and (self.points is None or self.values is None):
            raise ValueError(f"ShapeInstance {self.id!r} needs an `sdf_fn` or stored `points` and `values`.")

    @property
    def has_sdf(self) -> bool:
        """Whether the SDF can be evaluated at arbitrary points (False for stored samples only)."""
        return self.sdf_fn is not None

    def sdf(self, points: Any) -> Any:
        """Signed distance at `points` (N, 3); negative inside.

        Computed in float64. A numpy input gives a float32 numpy array; a torch tensor gives a tensor of the input's
        dtype on its device, without an autograd graph (the SDF is data, not part of the model).
        """
        if self.sdf_fn is None:
            raise ValueError(
                f"Shape {self.id!r} only holds stored SDF samples and cannot be evaluated at arbitrary points; "
                "use `.points`/`.values` or `.sample(num_points, seed)`."
            )
        if type(points).__module__.startswith("torch"):
            import torch

            values = self.sdf_fn(np.asarray(points.detach().cpu().numpy(), dtype=np.float64))
            return torch.as_tensor(np.asarray(values), dtype=points.dtype, device=points.device)
        return self.sdf_fn(np.asarray(points, dtype=np.float64)).astype(np.float32)

    def sample(self, num_points: int, seed: SeedLike = 0, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
        """(points (N, 3), sdf (N,)) float32 training samples; see `hf_wlora.data.sample_sdf` for the options."""
        from .sampling import sample_sdf

        return sample_sdf(self, num_points, seed=seed, **kwargs)

    def surface_points(self, num_points: int, seed: SeedLike = 0) -> np.ndarray:
        """(N, 3) float32 points on the surface; see `hf_wlora.data.sample_surface`."""
        from .sampling import sample_surface

        return sample_surface(self, num_points, seed=seed)


class InstanceDataset(Sequence[T]):
    """A sequence of instances with a class list, the interface every data source offers.

    Attributes:
        class_names: Names of the classes; an instance's `label` indexes this list.
        skipped: `(path, reason)` for every bad item that was skipped (`on_error="skip"`); empty otherwise.
    """

    class_names: list[str]
    skipped: list[tuple[str, str]]

    def __len__(self) -> int:
        raise NotImplementedError

    def _get(self, index: int) -> T:
        raise NotImplementedError

    def __getitem__(self, index: int) -> T:  # type: ignore[override]
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, not {type(index).__name__}")
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        return self._get(int(index))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> np.ndarray:
        """int64 array of every instance's label (subclasses override this when it is cheaper than loading)."""
        return np.array([self[i].label for i in range(len(self))], dtype=np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_instances={len(self)}, num_classes={self.num_classes})"


class ImageCollection(InstanceDataset[ImageInstance]):
    """Images loaded into memory (from a folder or a `datasets` data set).

    Images are kept as they were decoded (uint8 for 8-bit images, to use a quarter of the memory; float32 for float
    and 16-bit data) and converted to float32 in [0, 1] when an instance is accessed.
    """

    def __init__(
        self,
        ids: Sequence[str],
        labels: Sequence[int],
        images: Sequence[np.ndarray],
        class_names: Sequence[str],
        skipped: Iterable[tuple[str, str]] = (),
    ) -> None:
        if not len(ids) == len(labels) == len(images):
            raise ValueError("ids, labels and images must have the same length")
        self.ids = list(ids)
        self._labels = np.asarray(labels, dtype=np.int64)
        self._images = list(images)
        self.class_names = list(class_names)
        self.skipped = list(skipped)

    def __len__(self) -> int:
        return len(self.ids)

    def _get(self, index: int) -> ImageInstance:
        image = self._images[index]
        image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
        return ImageInstance(id=self.ids[index], label=int(self._labels[index]), image=image)

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()


class ShapeCollection(InstanceDataset[ShapeInstance]):
    """A list of `ShapeInstance`s (from a mesh folder or SDF sample files)."""

    def __init__(
        self,
        instances: Sequence[ShapeInstance],
        class_names: Sequence[str],
        skipped: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.instances = list(instances)
        self.class_names = list(class_names)
        self.skipped = list(skipped)

    def __len__(self) -> int:
        return len(self.instances)

    def _get(self, index: int) -> ShapeInstance:
        return self.instances[index]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.instances], dtype=np.int64)


@dataclass
class BadItems:
    """Applies the `on_error` policy to bad items found while loading, so no item is ever dropped silently.

    `on_error="raise"` raises a `ValueError` naming the item, the problem and how to fix it; `on_error="skip"`
    records `(path, reason)` in `skipped`, and `warn` logs one warning naming every skipped item.
    """

    on_error: OnError = "raise"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def report(self, item: PathLike | str, problem: str, fix: str) -> None:
        if self.on_error == "raise":
            raise ValueError(f"{item}: {problem}. {fix} (or pass on_error='skip' to skip and report bad items).")
        self.skipped.append((str(item), problem))

    def warn(self, source: PathLike | str) -> None:
        if self.skipped:
            lines = "\n".join(f"  {path}: {reason}" for path, reason in self.skipped)
            logger.warning("Skipped %d bad item(s) while loading %s:\n%s", len(self.skipped), source, lines)


def discover_files(
    root: PathLike, extensions: Sequence[str], bad_items: BadItems
) -> tuple[list[Path], list[int], list[str]]:
    """Files under `root` with one of `extensions`, their labels and the class names.

    Layout: `root/<class name>/**/file` (class = first-level subfolder, searched recursively, as in ShapeNet's
    `synset/model/models/model.obj`), or all files directly in `root` (one class named after `root`). Files directly
    in `root` next to class folders are bad items, since their class is unknown. Files are sorted so that the order,
    ids and labels are the same on every machine.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory.")
    exts = tuple(e.lower() for e in extensions)

    def matches(p: Path) -> bool:
        return p.is_file() and p.suffix.lower() in exts and not p.name.startswith(".")

    # Hidden folders (.git, .ipynb_checkpoints, ...) are never classes.
    class_dirs = sorted(
        d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and any(map(matches, d.rglob("*")))
    )
    top_files = sorted(p for p in root.iterdir() if matches(p))
    if not class_dirs:
        if not top_files:
            raise ValueError(f"No files with extension {', '.join(exts)} found under {root}.")
        return top_files, [0] * len(top_files), [root.name]
    for p in top_files:
        problem = "lies directly in the root folder next to class folders, so its class is unknown"
        bad_items.report(p, problem, "Move it into a class subfolder")
    files, labels = [], []
    for label, d in enumerate(class_dirs):
        for p in sorted(q for q in d.rglob("*") if matches(q)):
            files.append(p)
            labels.append(label)
    return files, labels, [d.name for d in class_dirs]


def relative_id(path: Path, root: PathLike) -> str:
    """Stable id of a file: its path relative to `root`, with forward slashes (unique, same on every machine)."""
    return path.relative_to(root).as_posix()


def most_common(values: Iterable[Any]) -> Any:
    """The most frequent value; ties go to the value seen first (deterministic)."""
    return Counter(values).most_common(1)[0][0]


def instance_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The random stream of generated instance `index`: a function of (seed, index, stream) only.

    So instance i is the same whatever the data set's size, and generating it never requires generating 0..i-1.
    `stream` separates independent uses (e.g. glyph style vs. label order).
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng([seed, index, stream])


def balanced_label(seed: int, index: int, num_classes: int, stream: int) -> int:
    """Label of generated instance `index`: every aligned block of `num_classes` instances holds each class once,
    in a per-block random order, so any set of 10 * k instances is exactly balanced and batches are not ordered.
    """
    order = instance_rng(seed, index // num_classes, stream).permutation(num_classes)
    return int(order[index % num_classes])


def read_folder(
    root: Path, extensions: Sequence[str], bad_items: BadItems, read: Callable[[Path], T], fix: str
) -> tuple[list[tuple[Path, int, T]], list[str]]:
    """Read every file of a class-per-subfolder tree with `read`; a `ValueError` makes the file a bad item.

    Returns `(path, label, value)` for every file read, and the class names. `fix` tells the user what to do about a
    bad file ("Repair or remove the file").
    """
    files, labels, class_names = discover_files(root, extensions, bad_items)
    items = []
    for path, label in zip(files, labels, strict=True):
        try:
            value = read(path)
        except ValueError as error:
            bad_items.report(path, str(error).removeprefix(f"{path}: "), fix)
            continue
        items.append((path, label, value))
    return items, class_names
