"""The on-disk layout of a weight data set folder, and writing a split's shards and metadata into it.

    folder/
      README.md                          the data set card (YAML metadata + description)
      wlora_info.json                    WeightDatasetInfo: spec, base field, score figures, settings
      data/train-00000-of-00002.parquet  the rows, in order, sharded; the layout `push_to_hub` writes, so
      data/train-00001-of-00002.parquet  `datasets.load_dataset(folder)` and the Hub read it as they are

Every file is written to a temporary name and renamed into place, so a killed process never leaves a truncated file
under a final name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Features

from ..files import TEMP_SUFFIX, commit_path, temporary_path, write_text_atomic
from .card import CARD_FILE_NAME, render_card
from .info import INFO_FILE_NAME, WeightDatasetInfo, score_figures
from .schema import SCORE_COLUMN

DATA_DIR = "data"
# datasets' default `max_shard_size` for push_to_hub: shards about this large (uncompressed) stream well from the Hub
DEFAULT_SHARD_BYTES = 500 * 2**20
# Rows per parquet row group. Shards are written one row group at a time, so writing a split holds one row group in
# memory, not a whole shard: memory stays flat in the data set's size (benchmarks/bench_encode.py --memory).
ROW_GROUP_ROWS = 256
_SPLIT_NAME = re.compile(r"\w+")


def check_split_name(split: str) -> str:
    """Return `split` if datasets accepts it as a split name (it also becomes part of the shard file names)."""
    if not _SPLIT_NAME.fullmatch(split):
        raise ValueError(f"A split name may only hold letters, digits and '_' (as in datasets), got {split!r}.")
    return split


def shard_path(folder: Path, split: str, index: int, count: int) -> Path:
    """`folder/data/{split}-{index:05d}-of-{count:05d}.parquet`, the naming datasets' `push_to_hub` uses."""
    return folder / DATA_DIR / f"{split}-{index:05d}-of-{count:05d}.parquet"


def shard_files(folder: Path, split: str) -> list[Path]:
    """The shards of `split` in `folder`, in order; raises if they do not form one complete set."""
    pattern = re.compile(rf"{re.escape(split)}-\d{{5}}-of-\d{{5}}\.parquet")
    found = sorted(path for path in (folder / DATA_DIR).glob(f"{split}-*.parquet") if pattern.fullmatch(path.name))
    expected = [shard_path(folder, split, index, len(found)).name for index in range(len(found))]
    if [path.name for path in found] != expected:
        raise ValueError(
            f"The shards of split {split!r} in {folder / DATA_DIR} do not form one complete set: "
            f"{[path.name for path in found]}. Remove stray files, or finalize the split again."
        )
    return found


def rows_per_shard(features: Features) -> int:
    """Rows per shard for shards of about `DEFAULT_SHARD_BYTES` (factors dominate a row's size)."""
    row_bytes = sum(4 * int(np.prod(feature.shape)) for feature in features.values() if hasattr(feature, "shape"))
    return max(1, DEFAULT_SHARD_BYTES // max(1, row_bytes))


def row_group_bounds(start: int, stop: int) -> list[tuple[int, int]]:
    """The (first, end) row ranges of the row groups of a shard holding rows start..stop-1: `ROW_GROUP_ROWS` rows
    each, counted from the shard's first row, so the files depend only on the rows."""
    return [(first, min(first + ROW_GROUP_ROWS, stop)) for first in range(start, stop, ROW_GROUP_ROWS)]


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` through a temporary file in the same folder, renamed into place when complete."""
    temporary = temporary_path(path)
    pq.write_table(table, temporary)
    commit_path(temporary, path)


def merged_info(folder: Path, info: WeightDatasetInfo) -> WeightDatasetInfo:
    """`info` plus the figures of the other splits already in `folder`, whose settings must agree with `info`'s."""
    path = folder / INFO_FILE_NAME
    if not path.is_file():
        return info
    existing = WeightDatasetInfo.load(path)
    differences = existing.setting_differences(info)
    if differences:
        raise ValueError(
            f"{folder} already holds a weight data set with other settings ({'; '.join(differences)}). Write this "
            "split into its own folder, or remove the old one."
        )
    return replace(info, splits={**existing.splits, **info.splits})


def write_split(
    folder: Path,
    split: str,
    info: WeightDatasetInfo,
    features: Features,
    shards: Iterable[Iterable[pa.Table]],
    count: int,
) -> WeightDatasetInfo:
    """Write the `count` shards of `split` from `shards` (in row order; each shard an iterable of its row groups, as
    `row_group_bounds` cuts them), then `wlora_info.json` and the card.

    Stale shards of the split (another shard count) and temporary shards a killed run left are removed first (the
    card's `data/{split}-*` pattern would read them as data); other splits are kept, and their figures stay in the
    info. Returns the info as written, with this split's figures.
    """
    merged = merged_info(folder, info)  # other splits' settings must agree: refused before any file changes
    names = {shard_path(folder, split, index, count).name for index in range(count)}
    for stale in [
        *(folder / DATA_DIR).glob(f"{split}-*.parquet"),
        *(folder / DATA_DIR).glob(f"{split}-*{TEMP_SUFFIX}"),
    ]:
        if stale.name not in names:
            stale.unlink()
    schema = features.arrow_schema
    scores = []
    written = 0
    for index, row_groups in enumerate(shards):
        path = shard_path(folder, split, index, count)
        temporary = temporary_path(path)
        with pq.ParquetWriter(temporary, schema) as writer:
            for table in row_groups:
                # one chunk per column, so the file's bytes depend only on the rows, not on how parts were batched
                table = table.select(schema.names).cast(schema).combine_chunks()
                writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                scores.append(table.column(SCORE_COLUMN).to_numpy())
        commit_path(temporary, path)
        written += 1
    if written != count:
        raise ValueError(f"Expected {count} shards of split {split!r}, got {written}.")
    info = merged.with_split(split, score_figures(np.concatenate(scores)))
    write_text_atomic(folder / INFO_FILE_NAME, info.to_json_string())
    write_text_atomic(folder / CARD_FILE_NAME, str(render_card(info, str(folder))))  # never a truncated card
    return info
