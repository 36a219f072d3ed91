"""Load the images users have: a folder with one subfolder per class, or a Hugging Face image data set.

Both loaders decode every image once (so bad items are found up front, not in the middle of training), convert it
to RGB (transparent pixels are composited on white), and optionally bring it to `resolution` x `resolution`:
centre crop to a square (the largest one, so the aspect ratio is kept), then resize with bicubic filtering (PIL
antialiases when downscaling). With `resolution=None` images keep their size, and all must share one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import BadItems, ImageCollection, OnError, PathLike, most_common, read_folder, relative_id

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")

_BATCH = 256  # rows read from a `datasets` data set at a time
_SIZE_FIX = "Pass resolution=N to centre-crop and resize every image to N x N"
_MAX_16_BIT = 65535  # white in a 16-bit image


def _deep_pil_to_float(image: Any) -> np.ndarray:
    """Grey values in [0, 1] of a PIL image of more than 8 bits per pixel: modes "I;16*" and "I" (Pillow's modes
    for 16-bit PNG and TIFF data, rescaled by 65535) and "F" (floats, kept as they are and checked as float arrays).

    `convert("RGB")` would clip such values at 255, so a 16-bit image would load as nearly all white.
    """
    array = np.asarray(image)
    if image.mode == "F":
        return array
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > _MAX_16_BIT:
        raise ValueError(
            f"integer image (mode {image.mode}) with values in [{low}, {high}], outside the 16-bit range "
            f"[0, {_MAX_16_BIT}], so its bit depth is unknown; save it as an 8-bit or 16-bit image"
        )
    return array.astype(np.float32) / _MAX_16_BIT


def _pil_to_rgb(image: Any) -> Any:
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def center_crop_resize(image: Any, resolution: int) -> Any:
    """Centre-crop a PIL image to a square and resize it to `resolution` x `resolution` (bicubic)."""
    from PIL import Image

    image = image.crop(_crop_box(*image.size))
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return image


def _float_crop_resize(array: np.ndarray, resolution: int) -> np.ndarray:
    # PIL resizes float32 data one channel at a time (a 2-D float32 array is a mode "F" image). Results are clipped
    # back to [0, 1] because bicubic filtering overshoots at edges.
    from PIL import Image

    height, width = array.shape[:2]
    left, top, right, bottom = _crop_box(width, height)
    size = (resolution, resolution)
    channels = [
        Image.fromarray(np.ascontiguousarray(array[top:bottom, left:right, c])).resize(size, Image.Resampling.BICUBIC)
        for c in range(array.shape[2])
    ]
    return np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0.0, 1.0)


def to_image_array(value: Any, resolution: int | None = None) -> np.ndarray:
    """Decode an image (PIL image, path, bytes, `datasets` image dict, or (H, W[, C]) array) to (H, W, 3).

    Returns uint8 for 8-bit data, and float32 in [0, 1] for float arrays and for images of more than 8 bits per
    pixel (16-bit images are divided by 65535, so they match the same picture at 8 bits); resized as described in
    the module docstring when `resolution` is given.

    Raises:
        ValueError: with the problem (undecodable data, NaN/inf, float values outside [0, 1], integer values beyond
            16 bits, wrong shape).
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(value, dict):  # a `datasets` Image feature read without decoding
        value = value.get("bytes") or value.get("path")
    if isinstance(value, (bytes, bytearray)):
        import io

        value = io.BytesIO(value)
    if isinstance(value, (str, Path)) or hasattr(value, "read"):
        try:
            with Image.open(value) as opened:
                opened.load()  # decode now: truncated files only fail here
                value = opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"cannot be decoded as an image ({type(error).__name__}: {error})") from error
    if isinstance(value, Image.Image) and (value.mode.startswith("I") or value.mode == "F"):
        value = _deep_pil_to_float(value)
    if isinstance(value, Image.Image):
        image = _pil_to_rgb(value)
        if resolution is not None:
            image = center_crop_resize(image, resolution)
        return np.asarray(image, dtype=np.uint8)

    array = np.asarray(value)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image array of shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    array = array[..., :3] if array.shape[2] == 4 else np.repeat(array, 3 // array.shape[2], axis=2)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("the image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"float pixel values must lie in [0, 1], found [{low:.3g}, {high:.3g}]")
        array = array.astype(np.float32)
        return _float_crop_resize(array, resolution) if resolution is not None else array
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"integer pixel values must lie in [0, 255], found [{array.min()}, {array.max()}]")
        return to_image_array(Image.fromarray(array.astype(np.uint8)), resolution)
    raise ValueError(f"unsupported pixel data type {array.dtype}")


def _drop_mismatched_sizes(names: list[str], arrays: list[np.ndarray], bad_items: BadItems) -> list[int]:
    """Indices of the images of the most common size; the others are bad items (only when not resizing)."""
    if not arrays:
        return []
    reference = most_common(a.shape[:2] for a in arrays)
    keep = []
    for i, (name, array) in enumerate(zip(names, arrays, strict=True)):
        if array.shape[:2] == reference:
            keep.append(i)
        else:
            (h, w), (rh, rw) = array.shape[:2], reference
            bad_items.report(name, f"has size {w}x{h} but most images are {rw}x{rh}", _SIZE_FIX)
    return keep


def _collect(
    items: list[tuple[str, str, int, np.ndarray]],
    class_names: list[str],
    resolution: int | None,
    bad_items: BadItems,
    source: str,
) -> ImageCollection:
    """Build the collection from decoded `(name for errors, id, label, array)` items, checking sizes if needed."""
    arrays = [item[3] for item in items]
    names = [item[0] for item in items]
    keep = range(len(items)) if resolution is not None else _drop_mismatched_sizes(names, arrays, bad_items)
    bad_items.warn(source)
    kept = [items[i] for i in keep]
    return ImageCollection(
        [item[1] for item in kept],
        [item[2] for item in kept],
        [item[3] for item in kept],
        class_names,
        bad_items.skipped,
    )


def load_image_folder(
    root: PathLike,
    resolution: int | None = None,
    on_error: OnError = "raise",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> ImageCollection:
    """Load `root/<class name>/**/image.png` (or images directly in `root`, one class) as `ImageInstance`s.

    Args:
        root: The folder. Classes are the first-level subfolders, in sorted order; ids are paths relative to `root`.
        resolution: Centre-crop and resize every image to this square size; None keeps sizes (all must match).
        on_error: `"raise"` (default) raises a `ValueError` naming the first bad file (undecodable image; size
            different from the others when `resolution` is None); `"skip"` skips bad files, lists them in
            `.skipped` and logs a warning naming each.
        extensions: File extensions to load (case-insensitive).

    Example:
        >>> images = load_image_folder("my_images/", resolution=64)
        >>> images[0].image.shape, images.class_names
        ((64, 64, 3), ['cats', 'dogs'])
    """
    bad_items = BadItems(on_error)
    root = Path(root)
    read, class_names = read_folder(
        root, extensions, bad_items, lambda path: to_image_array(path, resolution), "Remove or replace the file"
    )
    items = [(str(path), relative_id(path, root), label, array) for path, label, array in read]
    return _collect(items, class_names, resolution, bad_items, str(root))


def _open_hf_dataset(path_or_id: str, split: str, revision: str | None) -> Any:
    import datasets

    path = Path(path_or_id)
    if path.is_dir() and any((path / name).exists() for name in ("state.json", "dataset_dict.json")):
        # A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`.
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{path}: no split {split!r}; available splits: {', '.join(loaded)}")
            loaded = loaded[split]
        return loaded
    # A Hub id, or a local folder of data files (e.g. data/train-00000-of-00001.parquet, as `push_to_hub` writes).
    return datasets.load_dataset(path_or_id, split=split, revision=revision)


def _label_mapping(dataset: Any, label_column: str) -> tuple[list[int], list[str]]:
    from datasets import ClassLabel

    feature = dataset.features[label_column]
    values = list(dataset[label_column])
    if isinstance(feature, ClassLabel):
        return [int(v) for v in values], list(feature.names)
    unique = sorted(set(values), key=lambda v: (str(type(v)), v))
    if all(isinstance(v, (int, np.integer)) for v in unique) and unique and min(unique) >= 0 and max(unique) < 4096:
        # Integer labels keep their values, so label k is still class k.
        return [int(v) for v in values], [str(i) for i in range(int(max(unique)) + 1)]
    index = {v: i for i, v in enumerate(unique)}
    return [index[v] for v in values], [str(v) for v in unique]


def load_hf_images(
    path_or_id: str,
    split: str = "train",
    image_column: str = "image",
    label_column: str | None = "label",
    id_column: str | None = None,
    resolution: int | None = None,
    on_error: OnError = "raise",
    revision: str | None = None,
    max_instances: int | None = None,
) -> ImageCollection:
    """Load an image data set of the `datasets` library as `ImageInstance`s. Nothing is read before this call.

    Args:
        path_or_id: A Hub data set id (e.g. "user/my-images"), a folder written by `save_to_disk`, or a local folder
            of data files (such as the `data/train-*.parquet` layout that `push_to_hub` writes).
        split: The split to read.
        image_column: Column holding the images (an `Image` feature, or arrays (H, W[, C]) with uint8 values or
            floats in [0, 1]).
        label_column: Column holding labels: a `ClassLabel` (its names become `class_names`), non-negative integers
            (kept as they are), or any other values (sorted; class k is the k-th). None: every image gets label 0.
        id_column: Column holding ids; by default the id is `"{split}/{row index}"`.
        resolution: Centre-crop and resize every image to this square size; None keeps sizes (all must match).
        on_error: `"raise"` (default) raises a `ValueError` naming the first bad row; `"skip"` skips bad rows, lists
            them in `.skipped` and logs a warning naming each.
        revision: Hub revision (branch, tag or commit) to read.
        max_instances: Read only the first rows.

    Example:
        >>> images = load_hf_images("user/glyphs", split="train", resolution=32)
    """
    import datasets

    bad_items = BadItems(on_error)
    dataset = _open_hf_dataset(path_or_id, split, revision)
    columns = list(dataset.column_names)
    for name in (image_column, label_column, id_column):
        if name is not None and name not in columns:
            raise ValueError(f"{path_or_id}: no column {name!r}; the columns are {columns}")
    if max_instances is not None:
        dataset = dataset.select(range(min(max_instances, len(dataset))))
    if label_column is None:
        all_labels, class_names = [0] * len(dataset), ["0"]
    else:
        all_labels, class_names = _label_mapping(dataset, label_column)
    all_ids = [str(v) for v in dataset[id_column]] if id_column else [f"{split}/{i}" for i in range(len(dataset))]

    if isinstance(dataset.features[image_column], datasets.Image):
        # Decode here rather than in `datasets`, so an undecodable row is one bad item, not a crash of the batch.
        dataset = dataset.cast_column(image_column, datasets.Image(decode=False))

    items = []
    for start in range(0, len(dataset), _BATCH):
        for offset, value in enumerate(dataset[start : start + _BATCH][image_column]):
            i = start + offset
            name = f"{path_or_id} [{split}] row {i} (id {all_ids[i]})"
            try:
                array = to_image_array(value, resolution)
            except ValueError as error:
                bad_items.report(name, str(error), "Fix or drop the row")
                continue
            items.append((name, all_ids[i], all_labels[i], array))
    return _collect(items, class_names, resolution, bad_items, path_or_id)
