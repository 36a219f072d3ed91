"""`WeightDataset`: a loaded weight data set (a `datasets.Dataset` plus its info), and loading and saving one.

`load_weight_dataset` reads a folder written by `WeightDatasetWriter` or a Hub data set repo; either way the rows
come with their `WeightDatasetInfo`, so factors are returned under the spec's names and shapes, and decoding with a
field whose spec differs fails with the list of differences instead of producing garbage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import torch
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError, RepositoryNotFoundError

from ..spec import RepresentationSpec
from .info import INFO_FILE_NAME, WeightDatasetInfo
from .schema import ID_COLUMN, LABEL_COLUMN, SCORE_COLUMN, weight_features
from .shards import row_group_bounds, rows_per_shard, shard_files, write_split
from .writer import PROGRESS_DIR

Index = int | slice | Sequence[int] | range


@dataclass
class WeightDataset:
    """A weight data set: the rows (`dataset`, a `datasets.Dataset`) and what is needed to decode them (`info`).

    Attributes:
        dataset: One row per instance: `id`, `label`, `score` and one Array2D column per factor.
        info: The spec, base field, modality, score name and figures, class names and encoding settings.
        split: The split the rows come from.
        source: The folder or Hub id it was loaded from (None if built in memory).
    """

    dataset: datasets.Dataset
    info: WeightDatasetInfo
    split: str = "train"
    source: str | None = None

    @property
    def spec(self) -> RepresentationSpec:
        return self.info.spec

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def ids(self) -> list[str]:
        return list(self.dataset[ID_COLUMN])

    @property
    def labels(self) -> torch.Tensor:
        """(N,) int64 class indices, -1 where an instance has none."""
        return torch.as_tensor(self.dataset.with_format("numpy")[LABEL_COLUMN], dtype=torch.int64)

    @property
    def scores(self) -> torch.Tensor:
        """(N,) float32 reconstruction scores (see `info.score_name`)."""
        return torch.as_tensor(self.dataset.with_format("numpy")[SCORE_COLUMN], dtype=torch.float32)

    def factors(self, index: Index) -> dict[str, torch.Tensor]:
        """The factors of row `index` (each of the spec's shape), or of several rows (a slice or list: (B, ...)).

        Keys and shapes follow `spec.factor_shapes()`; 1-D factors come back 1-D, not as their stored (1, n).
        """
        shapes = self.spec.factor_shapes()
        batched = not isinstance(index, (int, np.integer))
        positions = self._positions(index)
        # One Arrow take and a flat view per column: datasets' numpy/torch formatting of Array2D goes through
        # per-row conversions, 2-20x slower on large batches.
        table = self.dataset.with_format("arrow", columns=list(shapes))[:].take(pa.array(positions, pa.int64()))
        factors = {}
        for name, shape in shapes.items():
            column = table.column(name).combine_chunks()
            storage = column.storage if isinstance(column, pa.ExtensionArray) else column
            values = torch.from_numpy(storage.flatten().flatten().to_numpy().copy()).reshape(-1, *shape)
            factors[name] = values if batched else values[0]
        return factors

    def stacked_factors(self, indices: Index | None = None) -> dict[str, torch.Tensor]:
        """Factors of several rows (all rows if None) as (B, *factor_shape) tensors, for `hf_wlora.batched_forward`."""
        if indices is None:
            indices = slice(None)
        elif isinstance(indices, (int, np.integer)):
            indices = [int(indices)]
        return self.factors(indices)

    def check_compatible(self, target: Any, adapter_name: str = "default") -> None:
        """Raise a ValueError listing every difference if `target` does not describe this data set's representation.

        Args:
            target: A `RepresentationSpec`; a model carrying an mLoRA adapter (a `PeftModel` or `MLoraModel`, whose
                `representation_spec(adapter_name)` gives its spec); or anything with a `spec` attribute, such as a
                `WeightSpaceDiT`, a `WeightSpacePipeline` or a `Representation`.
            adapter_name: The adapter to compare when `target` is a model.
        """
        if isinstance(target, RepresentationSpec):
            field_spec, against = target, "the spec"
        elif callable(getattr(target, "representation_spec", None)):
            field_spec, against = target.representation_spec(adapter_name), "the field it is decoded with"
        elif isinstance(getattr(target, "spec", None), RepresentationSpec):
            field_spec, against = target.spec, f"this {type(target).__name__}"
        else:
            raise TypeError(
                "check_compatible takes a RepresentationSpec, a model with an mLoRA adapter or an object with a "
                f"`spec` (a WeightSpaceDiT or WeightSpacePipeline), got {type(target)}."
            )
        base = self.info.base_field or "the field it was made with"
        revision = f" at revision {self.info.base_field_revision}" if self.info.base_field_revision else ""
        name = f" {self.source}" if self.source else ""
        field_spec.check_matches(
            self.spec,
            what=f"the weight data set{name}",
            against=against,
            fix=f"Decode it with {base}{revision} and its spec ({self.spec.name}), or with a pipeline trained on it.",
        )

    def select(self, indices: Index) -> WeightDataset:
        """Rows `indices` (an int, a slice, a range or a list) as a weight data set with the same info and source.

        The rows keep their spec, so e.g. `pipe.decode(weights.select(range(4)))` refuses weights of another
        representation by name, which plain factor tensors cannot.
        """
        return replace(self, dataset=self.dataset.select(self._positions(indices)))

    def _positions(self, index: Index) -> list[int]:
        """The row positions `index` names (negative positions count from the end; out of range: IndexError)."""
        rows = range(len(self.dataset))
        if isinstance(index, (int, np.integer)):
            return [rows[index]]
        if isinstance(index, slice):
            return list(rows[index])
        return [rows[position] for position in index]


def _read_info(source: str, revision: str | None, token: str | bool | None) -> tuple[WeightDatasetInfo, bool]:
    """The info of a local folder or Hub data set repo, and whether `source` is local."""
    folder = Path(source)
    if folder.is_dir():
        if revision is not None:
            raise ValueError(f"revision={revision!r} only applies to Hub ids, but {source} is a local folder.")
        path = folder / INFO_FILE_NAME
        if not path.is_file():
            unfinished = (
                " Its writer was not finalized: call WeightDatasetWriter.finalize()."
                if (folder / PROGRESS_DIR).is_dir()
                else ""
            )
            raise ValueError(
                f"{source} is not a weight data set: it has no {INFO_FILE_NAME}.{unfinished} Weight data sets are "
                "written by hf_wlora.encoding.WeightDatasetWriter; a plain data set loads with datasets.load_dataset."
            )
        return WeightDatasetInfo.load(path), True
    try:
        path = hf_hub_download(source, INFO_FILE_NAME, repo_type="dataset", revision=revision, token=token)
    except EntryNotFoundError:
        raise ValueError(
            f"The Hub data set {source} is not a weight data set: it has no {INFO_FILE_NAME}. Push weight data sets "
            "with hf_wlora.encoding.push_weight_dataset_to_hub; a plain data set loads with datasets.load_dataset."
        ) from None
    except (RepositoryNotFoundError, HFValidationError):
        raise ValueError(f"{source} is neither a local folder nor a data set repo on the Hub.") from None
    return WeightDatasetInfo.load(path), False


def load_weight_dataset(
    path_or_repo_id: str | Path, split: str = "train", revision: str | None = None, token: str | bool | None = None
) -> WeightDataset:
    """Load one split of a weight data set from a local folder or a Hub data set repo.

    Args:
        path_or_repo_id: A folder written by `WeightDatasetWriter` / `save_weight_dataset`, or a Hub data set id.
        split: The split to load.
        revision: Hub revision (branch, tag or commit hash); pin a commit hash for reproducible results.
        token: Hub token for private repos (default: the logged-in user's).
    """
    source = str(path_or_repo_id)
    info, local = _read_info(source, revision, token)
    if local:
        files = shard_files(Path(source), split)
        if not files:
            raise ValueError(f"{source} has no split {split!r}; its splits: {sorted(info.splits)}.")
        dataset = datasets.load_dataset("parquet", data_files={split: [str(path) for path in files]}, split=split)
    else:
        if split not in info.splits:
            raise ValueError(f"{source} has no split {split!r}; its splits: {sorted(info.splits)}.")
        dataset = datasets.load_dataset(source, split=split, revision=revision, token=token)
    expected = weight_features(info.spec, info.class_names)
    if dataset.features != expected:
        names = sorted(set(expected) | set(dataset.features))
        different = {
            name: (expected.get(name), dataset.features.get(name))
            for name in names
            if expected.get(name) != dataset.features.get(name)
        }
        raise ValueError(
            f"The columns of {source} do not match its {INFO_FILE_NAME} (column: expected, found): {different}."
        )
    return WeightDataset(dataset=dataset, info=info, split=split, source=source)


def save_weight_dataset(weights: WeightDataset, output_dir: str | Path, shard_size: int | None = None) -> Path:
    """Write `weights` (e.g. a subset made with `weights.dataset.select`) as a weight data set folder.

    The split's reconstruction figures are recomputed from its rows; other splits already in `output_dir` are kept
    if their settings agree. Returns the folder.
    """
    if len(weights) == 0:
        raise ValueError("The weight data set is empty; there is nothing to save.")
    folder = Path(output_dir)
    features = weight_features(weights.spec, weights.info.class_names)
    if weights.dataset.features != features:
        raise ValueError(f"The dataset's columns do not follow its spec; expected {features}.")
    rows = shard_size or rows_per_shard(features)
    count = max(1, math.ceil(len(weights) / rows))
    table_rows = weights.dataset.with_format("arrow")
    shards = (
        (table_rows[first:end] for first, end in row_group_bounds(start, min(start + rows, len(weights))))
        for start in range(0, count * rows, rows)
    )
    write_split(folder, weights.split, replace(weights.info, splits={}), features, shards, count)
    return folder
