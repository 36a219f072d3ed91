"""The columns of a weight data set, derived from the representation spec, and batches as Arrow tables.

Columns: `id` (string), `label` (`ClassLabel` when the class names are known, else int64; -1 = no label), `score`
(float32, the reconstruction score named in the info), then one `Array2D(shape, "float32")` per factor, named
exactly like the spec's factor (`"{layer}.A"`, `"{layer}.B"`, `"{layer}.weight"`, `"{layer}.bias"`). datasets,
Arrow and parquet accept dots in column names (tested through parquet files and the Hub), so no renaming is
needed, and a factor name, which always contains a dot, can never collide with `id`, `label` or `score`. 1-D factors
(an mlp layer's bias) are stored as (1, n) arrays, since Array2D is the only fixed-shape array that fits all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import torch
from datasets import Array2D, ClassLabel, Features, Value

from ..spec import RepresentationSpec

ID_COLUMN = "id"
LABEL_COLUMN = "label"
SCORE_COLUMN = "score"
NO_LABEL = -1


def stored_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The Array2D shape a factor of `shape` is stored with: itself if 2-D, (1, n) if 1-D."""
    return (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])


def weight_features(spec: RepresentationSpec, class_names: Sequence[str] | None = None) -> Features:
    """The `datasets.Features` of a weight data set of `spec` (see the module docstring for the columns)."""
    label = ClassLabel(names=list(class_names)) if class_names else Value("int64")
    columns = {ID_COLUMN: Value("string"), LABEL_COLUMN: label, SCORE_COLUMN: Value("float32")}
    for name, shape in spec.factor_shapes().items():
        columns[name] = Array2D(stored_shape(shape), "float32")
    return Features(columns)


def _as_numpy(values: torch.Tensor | np.ndarray | Sequence[float], dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
        if values.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bfloat16 exactly
            values = values.float()
        values = values.numpy()
    return np.ascontiguousarray(np.asarray(values), dtype=dtype)


def _factor_array(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """(B, rows, cols) float32 -> the Array2D extension array, through zero-copy fixed-size lists (no Python lists)."""
    _, rows, cols = values.shape
    flat = pa.array(values.reshape(-1))
    nested = pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, cols), rows)
    return pa.ExtensionArray.from_storage(arrow_type, nested.cast(arrow_type.storage_type))


def batch_table(
    spec: RepresentationSpec,
    features: Features,
    ids: Sequence[str],
    labels: Sequence[int] | torch.Tensor | np.ndarray | None,
    factors: Mapping[str, torch.Tensor | np.ndarray],
    scores: Sequence[float] | torch.Tensor | np.ndarray,
) -> pa.Table:
    """Check one batch of fitted instances against `spec` and return it as an Arrow table with `features`' schema.

    Args:
        spec: The representation the factors follow.
        features: `weight_features(spec, class_names)`.
        ids: One unique string id per instance.
        labels: One class index per instance (-1 for none), or None for no labels at all.
        factors: Stacked factors keyed by the spec's factor names, each (B, *factor_shape); stored as float32.
        scores: One reconstruction score per instance (NaN if it could not be measured).
    """
    ids = [str(value) for value in ids]
    count = len(ids)
    if count == 0:
        raise ValueError("A batch needs at least one instance.")
    if len(set(ids)) != count:
        repeated = sorted(value for value, n in Counter(ids).items() if n > 1)
        raise ValueError(f"Instance ids must be unique within a batch; repeated: {repeated}.")
    label_values = np.full(count, NO_LABEL, np.int64) if labels is None else _as_numpy(labels, np.int64).reshape(-1)
    score_values = _as_numpy(scores, np.float32).reshape(-1)
    for what, values in (("labels", label_values), ("scores", score_values)):
        if values.shape != (count,):
            raise ValueError(f"Got {count} ids but {values.shape[0]} {what}; pass one per instance.")
    label_feature = features[LABEL_COLUMN]
    upper = label_feature.num_classes if isinstance(label_feature, ClassLabel) else np.iinfo(np.int64).max
    bad_labels = sorted(set(label_values[(label_values < NO_LABEL) | (label_values >= upper)].tolist()))
    if bad_labels:
        allowed = f"0..{upper - 1} for the classes" if isinstance(label_feature, ClassLabel) else "class indices >= 0"
        raise ValueError(f"Labels {bad_labels} are out of range: use {allowed} and {NO_LABEL} for no label.")

    shapes = spec.factor_shapes()
    missing, unexpected = sorted(shapes.keys() - factors.keys()), sorted(factors.keys() - shapes.keys())
    if missing or unexpected:
        raise ValueError(
            f"The factors do not match the spec ({spec.name}): missing {missing}, unexpected {unexpected}. Key them "
            "by the spec's factor names (spec.factor_shapes())."
        )
    schema = features.arrow_schema
    columns: dict[str, pa.Array] = {
        ID_COLUMN: pa.array(ids, pa.string()),
        LABEL_COLUMN: pa.array(label_values),
        SCORE_COLUMN: pa.array(score_values),
    }
    for name, shape in shapes.items():
        values = _as_numpy(factors[name], np.float32)
        if values.shape != (count, *shape):
            raise ValueError(f"Factor {name!r} has shape {values.shape}; expected ({count}, *{shape}) for {count} ids.")
        not_finite = ~np.isfinite(values.reshape(count, -1)).all(axis=1)
        if not_finite.any():
            bad = [ids[i] for i in np.flatnonzero(not_finite)]
            raise ValueError(
                f"Factor {name!r} has NaN or infinite values for instance(s) {bad}: their fit diverged. Refit them "
                "(e.g. with a lower learning rate) or leave them out; a weight data set only stores finite weights."
            )
        columns[name] = _factor_array(values.reshape(count, *stored_shape(shape)), schema.field(name).type)
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)
