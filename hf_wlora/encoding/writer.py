"""`WeightDatasetWriter`: the encoder writes a weight data set as it goes, and a killed run resumes where it stopped.

While a split is being written, the folder holds a work area next to the data:

    output_dir/.wlora_progress/train/
      settings.json              the WeightDatasetInfo the run started with (a resumed run must match it)
      progress-00000.jsonl       one line per committed part of process 0: {"part", "ids", "order", "fingerprints"}
      part-00000-000000.parquet  one part per `write()` call, in the final schema

A part counts as written once its line is in the progress file. The part is written to a temporary name, flushed to
disk and renamed first, and the line is appended (and flushed) after, so a kill or a power cut at any moment leaves
either a committed part, or a temporary file, an unlisted part or a torn last line; a new writer deletes the latter
three, and `done_ids()` tells the encoder which instances to skip. A new writer also reads every committed part of its
process back: one that is unreadable or holds other rows than its line says (a disk that lost it) is dropped with a
warning, so its instances are encoded again instead of failing the finalisation. The per-instance `fingerprints` let
the encoder check that a resumed run still reads the same data (`committed()`).

`finalize()` sorts all committed rows by their order key (the instance index the encoder passes, or the order of
writing) and cuts them into shards of `shard_size` rows, so the result depends only on which instances were written,
not on batch sizes, crashes or the number of processes: a resumed run gives the same files as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..files import write_text_atomic
from .info import WeightDatasetInfo
from .schema import ID_COLUMN, batch_table, weight_features
from .shards import (
    check_split_name,
    merged_info,
    row_group_bounds,
    rows_per_shard,
    shard_files,
    write_parquet_atomic,
    write_split,
)

PROGRESS_DIR = ".wlora_progress"
_SETTINGS_FILE = "settings.json"

logger = logging.getLogger(__name__)


def _part_number(name: str) -> int:
    """The running number of a part file, `part-PPPPP-NNNNNN.parquet`."""
    return int(name.rsplit("-", 1)[1].split(".")[0])


def _process_of(name: str) -> int:
    """The process that wrote a part file, `part-PPPPP-NNNNNN.parquet`."""
    return int(name.split("-")[1])


def _read_records(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The committed records of one progress file, and whether the file needs rewriting to hold exactly them: a torn
    last line (a kill during the append), or a whole last record that lost its newline (a write cut short), which the
    next append would glue onto and so lose both records."""
    if not path.is_file():
        return [], False
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) - 1:
                return records, True
            raise ValueError(
                f"Line {number + 1} of {path} is corrupt, so the written instances cannot be known. Delete the "
                f"folder {path.parent} to start the split afresh."
            ) from None
    return records, bool(text) and not text.endswith("\n")


class WeightDatasetWriter:
    """Write the rows of one split of a weight data set in parts, resumably, and finalise them into shards.

    Args:
        output_dir: The weight data set folder (created if needed; other splits in it are kept).
        info: The data set's info: spec, modality, base field, class names, encoding settings. A resumed run must
            pass the same settings.
        split: Name of the split to write.
        shard_size: Rows per final shard; None chooses shards of about 500 MB, like `datasets`' `push_to_hub`.
        process_index: This process's index when several processes write the same split (each writes its own
            parts and progress file; pass `indices` to `write` so that rows from all processes sort together).
        num_processes: How many processes write the split in this run (the encoder passes it). The writer of
            process 0 then also checks the parts of processes numbered beyond, left by an earlier run with more
            processes, which no process of this run reads back otherwise. None: each writer checks its own only.

    Example:
        ```py
        writer = WeightDatasetWriter("weights/", info)
        done = writer.done_ids()
        for batch in batches_of(source, skip=done):
            writer.write(batch.ids, batch.labels, fitted_factors, scores, indices=batch.indices)
        writer.finalize()
        ```
    """

    def __init__(
        self,
        output_dir: str | Path,
        info: WeightDatasetInfo,
        *,
        split: str = "train",
        shard_size: int | None = None,
        process_index: int = 0,
        num_processes: int | None = None,
    ) -> None:
        if shard_size is not None and shard_size < 1:
            raise ValueError(f"shard_size must be >= 1 rows, got {shard_size}.")
        if process_index < 0:
            raise ValueError(f"process_index must be >= 0, got {process_index}.")
        if num_processes is not None and num_processes <= process_index:
            raise ValueError(f"num_processes must be above process_index {process_index}, got {num_processes}.")
        self.output_dir = Path(output_dir)
        self.info = info
        self.split = check_split_name(split)
        self.features = weight_features(info.spec, info.class_names)
        self.shard_size = shard_size or rows_per_shard(self.features)
        self.process_index = process_index
        self._work_dir = self.output_dir / PROGRESS_DIR / split
        if not self._work_dir.is_dir() and shard_files(self.output_dir, split):
            raise ValueError(
                f"Split {split!r} of {self.output_dir} is already finalized. Load it with load_weight_dataset, or "
                "write into another folder."
            )
        self._work_dir.mkdir(parents=True, exist_ok=True)
        self._check_settings()
        self._records = self._recover(process_index)
        if process_index == 0 and num_processes is not None:
            for orphan in self._process_indices() - set(range(num_processes)):  # an earlier run's extra processes
                self._recover(orphan)
        # read at the first write, not here: another process may still drop a damaged part of a process this run
        # no longer has (process 0 checks those), whose instances are then written again (the encoder's barrier)
        self._used_ids: set[str] | None = None
        self._used_orders = {order for record in self._records for order in record["order"]}
        # past every committed key and part name: after a dropped part, the next write must not reuse a later one's
        self._next_order = max(self._used_orders, default=-1) + 1
        self._next_part = max((_part_number(record["part"]) for record in self._records), default=-1) + 1

    # -- resume --------------------------------------------------------------------------------------------------
    def _progress_path(self, process_index: int) -> Path:
        return self._work_dir / f"progress-{process_index:05d}.jsonl"

    def _process_indices(self) -> set[int]:
        """The processes that have a progress file."""
        return {int(path.stem.split("-")[1]) for path in self._work_dir.glob("progress-*.jsonl")}

    def _check_settings(self) -> None:
        merged_info(self.output_dir, self.info)  # other splits in the folder must share the settings: fail now
        path = self._work_dir / _SETTINGS_FILE
        if not path.is_file():
            write_text_atomic(path, self.info.to_json_string())
            return
        differences = WeightDatasetInfo.load(path).setting_differences(self.info)
        if differences:
            raise ValueError(
                f"{self.output_dir} holds an unfinished split {self.split!r} written with other settings "
                f"({'; '.join(differences)}). Resume with the same settings, write into another folder, or delete "
                f"{self._work_dir} to start afresh."
            )

    def _recover(self, process_index: int) -> list[dict[str, Any]]:
        """A process's committed records; drops what a killed write left behind (torn line, unlisted parts) and
        committed parts that no longer read back."""
        progress_path = self._progress_path(process_index)
        records, damaged = _read_records(progress_path)
        readable = [record for record in records if self._part_is_intact(record)]
        if len(readable) < len(records) or damaged:
            write_text_atomic(progress_path, "".join(json.dumps(record) + "\n" for record in readable))
        listed = {record["part"] for record in readable}
        for path in self._work_dir.glob(f"part-{process_index:05d}-*"):
            if path.name not in listed:  # written (or half written) by a killed process, never committed
                path.unlink()
        return readable

    def _part_is_intact(self, record: dict[str, Any]) -> bool:
        """Whether a committed part reads back whole (it exists, parses, and has an id column), with exactly the ids
        its progress line lists."""
        path = self._work_dir / record["part"]
        try:
            table = pq.read_table(path)
            intact = table.column(ID_COLUMN).to_pylist() == record["ids"]
            problem = "holds other rows than its progress line lists"
        except (OSError, KeyError, pa.ArrowException) as error:  # missing, truncated, overwritten, foreign
            intact, problem = False, f"cannot be read ({type(error).__name__}: {error})"
        if not intact:
            logger.warning(
                "The committed part %s %s; dropping it, so its %d instances are encoded again.",
                path,
                problem,
                len(record["ids"]),
            )
        return intact

    def _all_records(self) -> list[dict[str, Any]]:
        """The committed records of every process, in process order."""
        records: list[dict[str, Any]] = []
        for path in sorted(self._work_dir.glob("progress-*.jsonl")):
            records += _read_records(path)[0]
        return records

    def done_ids(self) -> set[str]:
        """Ids of every instance already written to this split (by any process): the encoder skips these."""
        return {instance for record in self._all_records() for instance in record["ids"]}

    def committed(self) -> list[tuple[str, int, str | None]]:
        """(id, order index, fingerprint or None) of every instance written to this split, by any process."""
        return [
            entry
            for record in self._all_records()
            for entry in zip(
                record["ids"], record["order"], record.get("fingerprints") or [None] * len(record["ids"]), strict=True
            )
        ]

    # -- writing -------------------------------------------------------------------------------------------------
    def write(
        self,
        ids: Sequence[str],
        labels: Sequence[int] | torch.Tensor | np.ndarray | None,
        factors: Mapping[str, torch.Tensor | np.ndarray],
        scores: Sequence[float] | torch.Tensor | np.ndarray,
        *,
        indices: Sequence[int] | torch.Tensor | np.ndarray | None = None,
        fingerprints: Sequence[str] | None = None,
    ) -> None:
        """Write one batch of fitted instances; it is on disk and in `done_ids()` when this returns.

        Args:
            ids: One unique string id per instance.
            labels: Class indices (-1 for none), or None if the instances have no labels.
            factors: Stacked factors keyed by the spec's factor names, each (B, *factor_shape); stored as float32.
                NaN or infinite values are refused.
            scores: One reconstruction score per instance (NaN if it could not be measured).
            indices: The instances' positions in the source data set, which order the final rows; None orders rows
                as they are written (enough for one process that always visits instances in the same order).
            fingerprints: A content hash per instance (`instance_fingerprint`), kept with the part so that a resumed
                run can check it reads the same data; None keeps none.
        """
        table = batch_table(self.info.spec, self.features, ids, labels, factors, scores)
        batch_ids = table.column(ID_COLUMN).to_pylist()
        if self._used_ids is None:
            self._used_ids = self.done_ids()
        repeated = sorted(set(batch_ids) & self._used_ids)
        if repeated:
            raise ValueError(
                f"Instances {repeated[:10]} are already in split {self.split!r}: skip the ids in writer.done_ids()."
            )
        if indices is None:
            order = list(range(self._next_order, self._next_order + len(batch_ids)))
        else:
            order = [int(index) for index in (indices.tolist() if hasattr(indices, "tolist") else indices)]
            if len(order) != len(batch_ids):
                raise ValueError(f"Got {len(batch_ids)} ids but {len(order)} indices; pass one per instance.")
        reused = sorted((set(order) & self._used_orders) | {index for index, n in Counter(order).items() if n > 1})
        if reused:
            raise ValueError(f"Indices {reused[:10]} were already written; every instance needs its own index.")
        if fingerprints is not None and len(fingerprints) != len(batch_ids):
            raise ValueError(f"Got {len(batch_ids)} ids but {len(fingerprints)} fingerprints; pass one per instance.")
        name = f"part-{self.process_index:05d}-{self._next_part:06d}.parquet"
        write_parquet_atomic(table, self._work_dir / name)
        record = {"part": name, "ids": batch_ids, "order": order}
        if fingerprints is not None:
            record["fingerprints"] = [str(fingerprint) for fingerprint in fingerprints]
        with self._progress_path(self.process_index).open("a") as progress:  # the commit point of this batch
            progress.write(json.dumps(record) + "\n")
            progress.flush()
            os.fsync(progress.fileno())
        self._records.append(record)
        self._used_ids.update(batch_ids)
        self._used_orders.update(order)
        self._next_order += len(batch_ids)
        self._next_part += 1

    # -- finalising ----------------------------------------------------------------------------------------------
    def finalize(self) -> Path:
        """Sort every committed row by order key, write the shards, `wlora_info.json` and the card; return the folder.

        With several processes, call it on one process after all have finished writing. `self.info` is then the
        info as written, with this split's reconstruction figures.
        """
        rows = [
            (order, record["part"], position, instance)
            for record in self._all_records()
            for position, (order, instance) in enumerate(zip(record["order"], record["ids"], strict=True))
        ]
        if not rows:
            raise ValueError(f"Nothing was written to split {self.split!r} of {self.output_dir}; nothing to finalize.")
        self._check_unique(rows)
        rows.sort()
        count = math.ceil(len(rows) / self.shard_size)
        self.info = write_split(self.output_dir, self.split, self.info, self.features, self._shards(rows), count)
        # rename first: a kill while deleting must not leave a work area that looks like an unfinished split
        finished = self._work_dir.with_name(f"{self.split}.finished")
        shutil.rmtree(finished, ignore_errors=True)
        os.replace(self._work_dir, finished)
        shutil.rmtree(finished)
        if not any((self.output_dir / PROGRESS_DIR).iterdir()):
            (self.output_dir / PROGRESS_DIR).rmdir()
        return self.output_dir

    def _check_unique(self, rows: list[tuple[int, str, int, str]]) -> None:
        """Every id and every order key must occur once over all processes."""
        for what, column, hint in (
            ("Instance ids", 3, "each instance must be written by one process only"),
            ("Order indices", 0, "pass `indices` (the instances' source positions) when several processes write"),
        ):
            repeated = sorted(value for value, n in Counter(row[column] for row in rows).items() if n > 1)
            if repeated:
                raise ValueError(f"{what} {repeated[:10]} occur more than once in split {self.split!r}: {hint}.")

    def _read_part(self, part: str) -> pa.Table:
        """A committed part, for finalising; one that cannot be read (damaged since a writer last checked it) is named
        with the way to encode its instances again."""
        try:
            return pq.read_table(self._work_dir / part)
        except (OSError, pa.ArrowException) as error:
            process = _process_of(part)
            raise ValueError(
                f"The committed part {self._work_dir / part} cannot be read ({type(error).__name__}: {error}). Run the "
                "encoding again (its writers drop damaged parts and encode their instances again), or open a "
                f"WeightDatasetWriter with process_index={process}, which drops it, and write its instances again."
            ) from error

    def _shards(self, rows: list[tuple[int, str, int, str]]) -> Iterator[Iterator[pa.Table]]:
        """The final shards in order, each as its row groups (`row_group_bounds`), reading each part once and holding
        only the parts a later row still needs: memory stays flat in the number of rows."""
        last_use = {part: position for position, (_, part, _, _) in enumerate(rows)}
        cache: dict[str, pa.Table] = {}

        def row_group(first: int, end: int) -> pa.Table:
            chunk = rows[first:end]
            parts = list(dict.fromkeys(part for _, part, _, _ in chunk))
            offsets, total = {}, 0
            for part in parts:
                if part not in cache:
                    cache[part] = self._read_part(part)
                offsets[part], total = total, total + cache[part].num_rows
            table = pa.concat_tables([cache[part] for part in parts]).take(
                [offsets[part] + position for _, part, position, _ in chunk]
            )
            for part in parts:
                if last_use[part] < end:
                    del cache[part]
            return table

        def shard(start: int) -> Iterator[pa.Table]:
            for first, end in row_group_bounds(start, min(start + self.shard_size, len(rows))):
                yield row_group(first, end)

        for start in range(0, len(rows), self.shard_size):
            yield shard(start)
