"""Open a data source by name: the one string syntax every recipe and command uses for "which data".

`builtin-glyphs`, `builtin-shapes`, `image-folder:PATH`, `hf-images:ID_OR_PATH`, `mesh-folder:PATH`,
`sdf-samples:PATH`; the loader's keyword arguments come separately as options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from . import base, glyphs, images, meshes, sdf_files, shapes

# data source kind -> (loader, whether the location is passed as its first argument, what it holds)
DATA_SOURCES: dict[str, tuple[Callable[..., Any], bool, str]] = {
    "builtin-glyphs": (glyphs.GlyphImages, False, "image"),
    "builtin-shapes": (shapes.ProceduralShapes, False, "shape"),
    "image-folder": (images.load_image_folder, True, "image"),
    "hf-images": (images.load_hf_images, True, "image"),
    "mesh-folder": (meshes.load_mesh_folder, True, "shape"),
    "sdf-samples": (sdf_files.load_sdf_samples, True, "shape"),
}


def parse_data_source(source: Any) -> tuple[str, str | None]:
    """Split a data source string into (kind, location): "image-folder:photos/" -> ("image-folder", "photos/")."""
    if not isinstance(source, str) or not source:
        raise ValueError(f"data must be a string such as 'builtin-glyphs' or 'image-folder:PATH', got {source!r}.")
    kind, colon, location = source.partition(":")
    if kind not in DATA_SOURCES:
        raise ValueError(
            f"unknown data source {source!r}; expected one of: builtin-glyphs, builtin-shapes, image-folder:PATH, "
            "hf-images:ID_OR_PATH, mesh-folder:PATH, sdf-samples:PATH."
        )
    takes_location = DATA_SOURCES[kind][1]
    if takes_location and not location:
        raise ValueError(f"data source {kind!r} needs a location: write '{kind}:PATH_OR_ID'.")
    if not takes_location and colon:
        raise ValueError(f"data source {kind!r} takes no location; set its options (data_options) instead.")
    return kind, location or None


def data_modality(source: str) -> str:
    """What the data source `source` holds: "image" (2-D) or "shape" (3-D), told by its kind, without opening it."""
    return DATA_SOURCES[parse_data_source(source)[0]][2]


def open_data_source(source: str, options: dict[str, Any] | None = None) -> base.InstanceDataset:
    """The data set named by `source`, built with `options` (checked against the loader's parameters)."""
    options = options or {}
    kind, location = parse_data_source(source)
    loader, takes_location, _ = DATA_SOURCES[kind]
    parameters = list(inspect.signature(loader).parameters)[1 if takes_location else 0 :]
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise ValueError(
            f"data_options {unknown} are not options of {kind!r}; its options are: {', '.join(parameters)}."
        )
    dataset = loader(*((location,) if takes_location else ()), **options)
    if len(dataset) == 0:
        raise ValueError(f"the data source {source!r} holds no instances; check the path and data_options.")
    return dataset
