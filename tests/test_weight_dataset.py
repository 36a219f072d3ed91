"""Weight data sets: schema, sharded resumable writing, loading, the Hub round trip, and rows <-> PEFT adapters."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
import torch
from huggingface_hub import DatasetCard
from peft import PeftModel, get_peft_model
from torch import nn

from hf_wlora import LayerSpec, MLoraConfig, RepresentationSpec, batched_forward
from hf_wlora.encoding import (
    WeightDatasetInfo,
    WeightDatasetWriter,
    load_weight_dataset,
    peft_model_to_row,
    push_weight_dataset_to_hub,
    row_to_peft_adapter,
    save_weight_dataset,
    weight_features,
)
from hf_wlora.encoding import shards as shards_module
from hf_wlora.encoding import writer as writer_module
from hf_wlora.encoding.shards import write_parquet_atomic
from hf_wlora.files import commit_path
from hf_wlora.representations import mlora_config_from_spec
from hf_wlora.tuners.mlora import adapter_factors

CLASSES = ["circle", "square", "star"]


class TinyField(nn.Module):
    """A stand-in for a baked base field: coordinates (..., 8) -> values (..., 4) through plain Linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.net(coords)


def make_base() -> TinyField:
    torch.manual_seed(0)
    return TinyField().requires_grad_(False)


def make_peft_model(mask_seed: int = 0) -> PeftModel:
    config = MLoraConfig(
        r=4,
        target_modules=["net.0", "net.2", "net.4"],
        rank_pattern={"net.4": 2},
        asymmetric_mask=True,
        mask_seed=mask_seed,
    )
    return get_peft_model(make_base(), config)


SPEC = make_peft_model().base_model.representation_spec()
MLP_SPEC = RepresentationSpec(kind="mlp", layers=(LayerSpec("0", 16, 8, bias=True), LayerSpec("2", 4, 16)))


def make_info(spec: RepresentationSpec = SPEC) -> WeightDatasetInfo:
    return WeightDatasetInfo(
        spec=spec,
        modality="image",
        base_field=None if spec.kind == "mlp" else "hf-wlora-tester/tiny-field",
        base_field_revision=None if spec.kind == "mlp" else "0123456789abcdef0123456789abcdef01234567",
        class_names=CLASSES,
        encoding={"steps": 100, "lr": 0.01},
    )


def make_instances(count: int, spec: RepresentationSpec = SPEC, seed: int = 0) -> dict:
    """`count` instances: ids, labels, scores and stacked factors (mask entries left random on purpose)."""
    generator = torch.Generator().manual_seed(seed)
    return {
        "ids": [f"img-{index:03d}" for index in range(count)],
        "labels": [index % len(CLASSES) for index in range(count)],
        "scores": torch.rand(count, generator=generator) * 10 + 25,
        "factors": {
            name: 1 + 0.3 * torch.randn((count, *shape), generator=generator)
            for name, shape in spec.factor_shapes().items()
        },
    }


def write_batches(writer: WeightDatasetWriter, instances: dict, batch_size: int, skip: set[str] = frozenset()) -> None:
    """What an encoder does: visit instances in a fixed order, skip the done ones, write fitted batches."""
    todo = [index for index, instance in enumerate(instances["ids"]) if instance not in skip]
    write_indexed(writer, instances, todo, batch_size)


def write_indexed(writer: WeightDatasetWriter, instances: dict, indices: list[int], batch_size: int = 2) -> None:
    """Write the instances at `indices` (their source positions) in batches."""
    for batch in [indices[start : start + batch_size] for start in range(0, len(indices), batch_size)]:
        writer.write(
            [instances["ids"][i] for i in batch],
            [instances["labels"][i] for i in batch],
            {name: value[batch] for name, value in instances["factors"].items()},
            instances["scores"][batch],
            indices=batch,
        )


def write_dataset(folder: Path, instances: dict, batch_size: int = 3, shard_size: int = 4, **info_kwargs) -> Path:
    writer = WeightDatasetWriter(folder, make_info(**info_kwargs), shard_size=shard_size)
    write_batches(writer, instances, batch_size)
    return writer.finalize()


def assert_rows_equal(weights, instances: dict, rows: list[int] | None = None) -> None:
    rows = list(range(len(instances["ids"]))) if rows is None else rows
    assert weights.ids == [instances["ids"][row] for row in rows]
    assert weights.labels.tolist() == [instances["labels"][row] for row in rows]
    assert torch.equal(weights.scores, instances["scores"][rows])
    stacked = weights.stacked_factors()
    for name, value in instances["factors"].items():
        assert torch.equal(stacked[name], value[rows]), name


# -- schema -------------------------------------------------------------------------------------------------------
def test_features_follow_the_spec() -> None:
    features = weight_features(SPEC, CLASSES)
    assert list(features) == ["id", "label", "score", *SPEC.factor_shapes()]
    assert features["label"] == datasets.ClassLabel(names=CLASSES)
    assert features["score"] == datasets.Value("float32")
    for name, shape in SPEC.factor_shapes().items():
        assert features[name] == datasets.Array2D(shape, "float32")
    assert features["net.4.A"].shape == (2, 16)  # the rank_pattern rank

    mlp = weight_features(MLP_SPEC)
    assert mlp["label"] == datasets.Value("int64")
    assert mlp["0.weight"].shape == (16, 8)
    assert mlp["0.bias"].shape == (1, 16)  # 1-D factors are stored as (1, n)
    assert "2.bias" not in mlp


# -- writing and loading ------------------------------------------------------------------------------------------
def test_written_shards_load_back_exactly(tmp_path: Path) -> None:
    instances = make_instances(10)
    folder = write_dataset(tmp_path / "weights", instances, batch_size=3, shard_size=4)
    assert sorted(path.name for path in (folder / "data").iterdir()) == [
        f"train-0000{index}-of-00003.parquet" for index in range(3)
    ]
    assert sorted(path.name for path in folder.iterdir()) == ["README.md", "data", "wlora_info.json"]

    weights = load_weight_dataset(folder)
    assert len(weights) == 10
    assert_rows_equal(weights, instances)
    one = weights.factors(7)
    assert {name: tuple(value.shape) for name, value in one.items()} == SPEC.factor_shapes()
    assert all(torch.equal(one[name], instances["factors"][name][7]) for name in one)
    figures = weights.info.splits["train"]
    assert figures["num_instances"] == 10
    assert figures["score_mean"] == pytest.approx(instances["scores"].double().mean().item())
    assert weights.info == WeightDatasetInfo.load(folder / "wlora_info.json")

    plain = datasets.load_dataset(str(folder), split="train")  # the folder is an ordinary datasets folder too
    assert plain.features == weight_features(SPEC, CLASSES)
    assert list(plain["id"]) == instances["ids"]


def test_a_refused_save_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    """Saving rows of another field into a folder whose settings differ is refused before any of its files change
    (the shards were replaced first, under the old wlora_info.json, when the check came after them)."""
    folder = write_dataset(tmp_path / "weights", make_instances(9), shard_size=4)
    before = {path.name: path.read_bytes() for path in sorted((folder / "data").iterdir())}
    weights = load_weight_dataset(folder)
    other = dataclasses.replace(weights.select(range(5)), info=dataclasses.replace(weights.info, base_field="x/other"))
    with pytest.raises(ValueError, match=r"already holds a weight data set with other settings \(base_field"):
        save_weight_dataset(other, folder, shard_size=2)
    assert {path.name: path.read_bytes() for path in sorted((folder / "data").iterdir())} == before
    assert len(load_weight_dataset(folder)) == 9


def test_shards_are_written_one_row_group_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finalising holds one row group, not a whole shard, in memory; the rows and their order do not change."""
    import pyarrow.parquet as pq

    from hf_wlora.encoding import shards

    instances = make_instances(10)
    whole = write_dataset(tmp_path / "whole", instances, batch_size=3, shard_size=7)
    monkeypatch.setattr(shards, "ROW_GROUP_ROWS", 3)
    grouped = write_dataset(tmp_path / "grouped", instances, batch_size=3, shard_size=7)
    files = [pq.ParquetFile(grouped / "data" / f"train-0000{index}-of-00002.parquet") for index in range(2)]
    assert [[file.metadata.row_group(k).num_rows for k in range(file.num_row_groups)] for file in files] == [
        [3, 3, 1],  # groups counted from each shard's first row
        [3],
    ]
    assert_rows_equal(load_weight_dataset(grouped), instances)
    assert load_weight_dataset(whole).ids == load_weight_dataset(grouped).ids
    again = write_dataset(tmp_path / "again", instances, batch_size=2, shard_size=7)  # other parts, same bytes
    for index in range(2):
        name = f"data/train-0000{index}-of-00002.parquet"
        assert (again / name).read_bytes() == (grouped / name).read_bytes()


def test_mlp_rows_keep_their_shapes(tmp_path: Path) -> None:
    instances = make_instances(3, MLP_SPEC)
    weights = load_weight_dataset(write_dataset(tmp_path, instances, spec=MLP_SPEC))
    assert_rows_equal(weights, instances)
    assert weights.factors(0)["0.bias"].shape == (16,)


def test_rows_from_several_processes_are_ordered_by_index(tmp_path: Path) -> None:
    instances = make_instances(9)
    info = make_info()
    writers = [WeightDatasetWriter(tmp_path, info, shard_size=4, process_index=rank) for rank in (0, 1)]
    for rank, writer in enumerate(writers):  # each process writes its instances backwards: the indices set the order
        write_indexed(writer, instances, list(range(8 - rank, -1, -2)))
    assert writers[1].done_ids() == set(instances["ids"])
    writers[0].finalize()
    assert_rows_equal(load_weight_dataset(tmp_path), instances)


def test_fewer_processes_resume_and_check_the_parts_of_the_others(tmp_path: Path, caplog) -> None:
    """Two processes wrote; a resume with one must still read back the second one's parts: a damaged one is dropped
    (its instances encoded again), not left to fail the finalisation."""
    instances = make_instances(8)
    for rank in (0, 1):  # every other instance each, in batches of two
        writer = WeightDatasetWriter(tmp_path, make_info(), shard_size=4, process_index=rank, num_processes=2)
        write_indexed(writer, instances, list(range(rank, 8, 2)))
    damaged = tmp_path / ".wlora_progress" / "train" / "part-00001-000000.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])  # instances 1 and 3

    with pytest.raises(ValueError, match=r"part-00001-000000.parquet cannot be read .*process_index=1, which drops"):
        WeightDatasetWriter(tmp_path, make_info(), shard_size=4).finalize()  # each writer checks only its own parts
    with caplog.at_level(logging.WARNING, logger="hf_wlora.encoding.writer"):
        resumed = WeightDatasetWriter(tmp_path, make_info(), shard_size=4, process_index=0, num_processes=1)
    assert "part-00001-000000.parquet cannot be read" in caplog.text
    assert resumed.done_ids() == set(instances["ids"]) - {"img-001", "img-003"}
    write_indexed(resumed, instances, [1, 3])
    resumed.finalize()
    assert_rows_equal(load_weight_dataset(tmp_path), instances)
    with pytest.raises(ValueError, match="num_processes must be above process_index 1, got 1"):
        WeightDatasetWriter(tmp_path / "other", make_info(), process_index=1, num_processes=1)


def test_instances_of_a_part_another_process_drops_are_written_again(tmp_path: Path) -> None:
    """Three processes wrote, a part of the third is damaged, and a resume runs two: process 1 starts before process 0
    drops that part (it checks the parts of the processes the run no longer has), then writes one of its instances."""
    instances = make_instances(9)
    for rank in (0, 1, 2):
        writer = WeightDatasetWriter(tmp_path, make_info(), shard_size=4, process_index=rank, num_processes=3)
        write_indexed(writer, instances, list(range(rank, 9, 3)))
    damaged = tmp_path / ".wlora_progress" / "train" / "part-00002-000000.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])  # instances 2 and 5
    second = WeightDatasetWriter(tmp_path, make_info(), shard_size=4, process_index=1, num_processes=2)
    first = WeightDatasetWriter(tmp_path, make_info(), shard_size=4, process_index=0, num_processes=2)
    assert first.done_ids() == set(instances["ids"]) - {"img-002", "img-005"}
    write_indexed(second, instances, [5])  # was refused as "already in split 'train'"
    write_indexed(first, instances, [2])
    first.finalize()
    assert_rows_equal(load_weight_dataset(tmp_path), instances)


def test_the_same_instance_from_two_processes_is_refused(tmp_path: Path) -> None:
    instances = make_instances(3)
    writers = [WeightDatasetWriter(tmp_path, make_info(), process_index=rank) for rank in (0, 1)]
    write_indexed(writers[0], instances, [0])  # each writer reads what the others wrote at its first write
    with pytest.raises(ValueError, match=r"Instances \['img-000'\] are already in split 'train'"):
        write_indexed(writers[1], instances, [0])
    write_indexed(writers[1], instances, [1])
    write_indexed(writers[0], instances, [1])  # written by the other process after this one looked: finalize sees it
    with pytest.raises(ValueError, match=r"ids \['img-001'\] occur more than once"):
        writers[0].finalize()


# -- resuming -----------------------------------------------------------------------------------------------------
def killed_write(crash_point: str) -> Callable[[pa.Table, Path], None]:
    """A stand-in for the part write that dies at `crash_point`, leaving what a killed process would leave."""

    def write(table: pa.Table, path: Path) -> None:
        if crash_point == "writing the part":  # a truncated temporary file
            write_parquet_atomic(table, path)
            data = path.read_bytes()
            path.unlink()
            path.with_name(path.name + ".tmp").write_bytes(data[: len(data) // 2])
        else:
            write_parquet_atomic(table, path)  # a complete part ...
            if crash_point == "appending the record":  # ... and a torn last progress line
                with (path.parent / "progress-00000.jsonl").open("a") as progress:
                    progress.write('{"part": "' + path.name + '", "ids": ["img-0')
        raise RuntimeError("killed")

    return write


@pytest.mark.parametrize("crash_point", ["writing the part", "before the record", "appending the record"])
def test_a_killed_run_resumes_to_the_same_data_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_point: str
) -> None:
    instances = make_instances(11)
    reference = write_dataset(tmp_path / "uninterrupted", instances, batch_size=3, shard_size=4)

    folder = tmp_path / "killed"
    writer = WeightDatasetWriter(folder, make_info(), shard_size=4)
    write_batches(writer, {**instances, "ids": instances["ids"][:6]}, batch_size=3)  # two batches committed
    monkeypatch.setattr(writer_module, "write_parquet_atomic", killed_write(crash_point))
    with pytest.raises(RuntimeError, match="killed"):
        write_batches(writer, instances, batch_size=3, skip=writer.done_ids())
    monkeypatch.undo()
    left_behind = {
        "writing the part": "part-00000-000002.parquet.tmp",
        "before the record": "part-00000-000002.parquet",
        "appending the record": "part-00000-000002.parquet",
    }[crash_point]
    assert (folder / ".wlora_progress" / "train" / left_behind).is_file()

    resumed = WeightDatasetWriter(folder, make_info(), shard_size=4)
    done = resumed.done_ids()
    assert done == set(instances["ids"][:6])
    write_batches(resumed, instances, batch_size=4, skip=done)  # another batch size: the result must not change
    resumed.finalize()

    assert not (folder / ".wlora_progress").exists()
    names = sorted(path.name for path in (reference / "data").iterdir())
    assert sorted(path.name for path in (folder / "data").iterdir()) == names
    for name in names:  # byte for byte the files of the uninterrupted run
        assert (folder / "data" / name).read_bytes() == (reference / "data" / name).read_bytes()
    weights = load_weight_dataset(folder)
    assert len(set(weights.ids)) == len(weights) == 11
    assert_rows_equal(weights, instances)


def test_a_committed_line_that_lost_its_newline_keeps_its_instances(tmp_path: Path) -> None:
    """A write cut short right after a record, before its newline: the record is committed, and the next append must
    not glue onto it (the glued line would read as torn at finalisation, dropping both batches without a word)."""
    instances = make_instances(11)
    reference = write_dataset(tmp_path / "uninterrupted", instances, batch_size=3, shard_size=4)
    folder = tmp_path / "cut"
    writer = WeightDatasetWriter(folder, make_info(), shard_size=4)
    write_batches(writer, {**instances, "ids": instances["ids"][:6]}, batch_size=3)
    progress = folder / ".wlora_progress" / "train" / "progress-00000.jsonl"
    progress.write_text(progress.read_text().removesuffix("\n"))
    resumed = WeightDatasetWriter(folder, make_info(), shard_size=4)
    assert resumed.done_ids() == set(instances["ids"][:6])
    write_batches(resumed, instances, batch_size=3, skip=resumed.done_ids())
    resumed.finalize()
    for name in sorted(path.name for path in (reference / "data").iterdir()):
        assert (folder / "data" / name).read_bytes() == (reference / "data" / name).read_bytes()
    assert_rows_equal(load_weight_dataset(folder), instances)


def test_finalising_again_removes_the_shards_a_killed_finalisation_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finalisation killed between writing a shard and renaming it leaves the shard under a temporary name, which
    the card's `data/train-*` pattern would read as rows; the rerun (another process id) removes it."""
    instances = make_instances(11)
    writer = WeightDatasetWriter(tmp_path, make_info(), shard_size=4)
    write_batches(writer, instances, batch_size=3)
    renamed = []

    def killed_commit(temporary: Path, path: Path) -> None:
        if renamed:  # the second shard is complete but never renamed
            raise RuntimeError("killed")
        renamed.append(path)
        commit_path(temporary, path)

    monkeypatch.setattr(shards_module, "commit_path", killed_commit)
    with pytest.raises(RuntimeError, match="killed"):
        writer.finalize()
    monkeypatch.undo()
    (left,) = (tmp_path / "data").glob("*.tmp")
    left.rename(left.with_name(left.name.replace(f".{os.getpid()}.", ".4242.")))  # as another process left it

    WeightDatasetWriter(tmp_path, make_info(), shard_size=4).finalize()
    assert not list((tmp_path / "data").glob("*.tmp"))
    assert len(datasets.load_dataset(str(tmp_path), split="train")) == 11
    assert_rows_equal(load_weight_dataset(tmp_path), instances)


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    instances = make_instances(3)
    write_batches(WeightDatasetWriter(tmp_path, make_info()), instances, batch_size=2)
    other = make_info(spec=make_peft_model(mask_seed=1).base_model.representation_spec())
    with pytest.raises(ValueError, match=r"other settings.*mask_seed: 0 != 1"):
        WeightDatasetWriter(tmp_path, other)


def test_bad_batches_are_refused(tmp_path: Path) -> None:
    writer = WeightDatasetWriter(tmp_path, make_info())
    instances = make_instances(2)
    ids, labels, factors, scores = instances["ids"], instances["labels"], instances["factors"], instances["scores"]
    nan = {**factors, "net.2.B": factors["net.2.B"].clone()}
    nan["net.2.B"][1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"'net.2.B' has NaN or infinite values for instance\(s\) \['img-001'\]"):
        writer.write(ids, labels, nan, scores)
    with pytest.raises(ValueError, match=r"missing \['net.4.B'\]"):
        writer.write(ids, labels, {k: v for k, v in factors.items() if k != "net.4.B"}, scores)
    with pytest.raises(ValueError, match=r"'net.0.A' has shape \(2, 4, 9\)"):
        writer.write(ids, labels, {**factors, "net.0.A": torch.zeros(2, 4, 9)}, scores)
    with pytest.raises(ValueError, match=r"Labels \[3\] are out of range"):
        writer.write(ids, [0, 3], factors, scores)
    writer.write(ids, labels, factors, scores)
    with pytest.raises(ValueError, match=r"already in split 'train': skip the ids in writer.done_ids"):
        writer.write(ids[:1], labels[:1], {k: v[:1] for k, v in factors.items()}, scores[:1])
    assert not list(tmp_path.glob(".wlora_progress/train/*.tmp"))


def test_unfinished_and_foreign_folders_are_refused(tmp_path: Path) -> None:
    writer = WeightDatasetWriter(tmp_path / "weights", make_info())
    write_batches(writer, make_instances(2), batch_size=2)
    with pytest.raises(ValueError, match=r"no wlora_info.json. Its writer was not finalized"):
        load_weight_dataset(tmp_path / "weights")
    writer.finalize()
    with pytest.raises(ValueError, match="already finalized"):
        WeightDatasetWriter(tmp_path / "weights", make_info())
    with pytest.raises(ValueError, match="has no split 'test'"):
        load_weight_dataset(tmp_path / "weights", split="test")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match=r"not a weight data set: it has no wlora_info.json"):
        load_weight_dataset(tmp_path / "plain")


# -- the Hub ------------------------------------------------------------------------------------------------------
def test_push_to_hub_and_load_back(hub, tmp_path: Path) -> None:
    instances = make_instances(7)
    folder = write_dataset(tmp_path / "weights", instances, batch_size=3, shard_size=3)
    local = load_weight_dataset(folder)
    repo_id = hub.unique_repo_id("tiny-weights")
    push_weight_dataset_to_hub(folder, repo_id)

    weights = load_weight_dataset(repo_id)
    assert weights.info == local.info
    assert weights.spec == SPEC
    assert_rows_equal(weights, instances)
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert {"hf_wlora", "weight-space", "neural-fields", "mlora"} <= set(card.data.tags)
    assert "| `net.4` | 4 x 16 | 2 |" in card.text  # the spec table
    assert f'load_weight_dataset("{repo_id}", split="train")' in card.text
    assert "hf-wlora-tester/tiny-field" in card.text

    # a subset as a WeightDataset replaces the old shards in one commit
    push_weight_dataset_to_hub(dataclasses.replace(weights, dataset=weights.dataset.select([1, 4])), repo_id)
    reloaded = load_weight_dataset(repo_id)
    assert_rows_equal(reloaded, instances, rows=[1, 4])
    assert reloaded.info.splits["train"]["num_instances"] == 2


# -- rows <-> PEFT adapters ---------------------------------------------------------------------------------------
def test_a_row_is_a_peft_adapter_and_back(tmp_path: Path) -> None:
    instances = make_instances(3)
    frozen, values = SPEC.frozen_entries()  # an adapter's frozen entries hold the mask's values, or it cannot load
    instances["factors"] = SPEC.unflatten(torch.where(frozen, values, SPEC.flatten(instances["factors"])))
    weights = load_weight_dataset(write_dataset(tmp_path / "weights", instances))
    coords = torch.rand(5, 8) * 2 - 1

    outputs = []
    for row in range(2):
        folder = row_to_peft_adapter(weights, row, tmp_path / f"adapter-{row}")
        config = json.loads((folder / "adapter_config.json").read_text())
        assert (config["peft_type"], config["base_model_name_or_path"]) == ("MLORA", "hf-wlora-tester/tiny-field")
        loaded = PeftModel.from_pretrained(make_base(), folder)
        weights.check_compatible(loaded)

        expected = make_peft_model()  # the same factors put into a fresh PEFT model by hand
        with torch.no_grad():
            for name, value in adapter_factors(expected).items():
                value.copy_(weights.factors(row)[name])
        assert torch.equal(loaded(coords), expected(coords))
        back = peft_model_to_row(loaded)
        assert back.keys() == weights.factors(row).keys()
        assert all(torch.equal(back[name], weights.factors(row)[name]) for name in back)
        outputs.append(loaded(coords))

    batched = batched_forward(make_peft_model(), weights.stacked_factors([0, 1]), coords.expand(2, 5, 8))
    torch.testing.assert_close(batched, torch.stack(outputs), rtol=1e-5, atol=1e-6)


def test_the_adapter_config_targets_exactly_the_spec_layers() -> None:
    config = mlora_config_from_spec(SPEC)
    nested = nn.Sequential(TinyField(), TinyField())  # "0.net.0" ends with "net.0": a suffix match would take it
    spec = get_peft_model(make_base(), copy.deepcopy(config)).base_model.representation_spec()
    assert spec == SPEC
    with pytest.raises(ValueError, match="Target modules"):
        get_peft_model(nested, config)


def test_a_field_of_another_spec_is_named_in_the_error(tmp_path: Path) -> None:
    weights = load_weight_dataset(write_dataset(tmp_path, make_instances(2)))
    with pytest.raises(ValueError, match=r"does not match the field .*mask_seed: 1 != 0"):
        weights.check_compatible(make_peft_model(mask_seed=1))
    with pytest.raises(ValueError, match=r"alpha: 2.0 != 1.0"):
        weights.check_compatible(RepresentationSpec.from_dict({**SPEC.to_dict(), "alpha": 2.0}))


def test_mlp_rows_have_no_adapter_form(tmp_path: Path) -> None:
    weights = load_weight_dataset(write_dataset(tmp_path, make_instances(2, MLP_SPEC), spec=MLP_SPEC))
    with pytest.raises(ValueError, match="standalone field MLP, not an adapter"):
        row_to_peft_adapter(weights, 0, tmp_path / "adapter")
