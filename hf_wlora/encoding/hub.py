"""Publishing a weight data set on the Hub: its parquet shards, `wlora_info.json` and a rendered data set card."""

from __future__ import annotations

import tempfile
from pathlib import Path

from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi

from .card import CARD_FILE_NAME, render_card
from .info import INFO_FILE_NAME, WeightDatasetInfo
from .shards import DATA_DIR, shard_files
from .weight_dataset import WeightDataset, save_weight_dataset


def _upload(
    folder: Path, repo_id: str, private: bool, token: str | bool | None, commit_message: str | None
) -> CommitInfo:
    """One commit with every split's shards, `wlora_info.json` and the card, so the three never disagree."""
    info_path = folder / INFO_FILE_NAME
    if not info_path.is_file():
        raise ValueError(
            f"{folder} is not a finalized weight data set (no {INFO_FILE_NAME}); call WeightDatasetWriter.finalize() "
            "first."
        )
    info = WeightDatasetInfo.load(info_path)
    shards = [path for split in sorted(info.splits) for path in shard_files(folder, split)]
    # the card's code snippet loads from the Hub id (the folder's own README names the folder)
    card = str(render_card(info, load_path=repo_id)).encode()
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=f"{DATA_DIR}/{path.name}", path_or_fileobj=str(path)) for path in shards
    ]
    operations += [
        CommitOperationAdd(path_in_repo=INFO_FILE_NAME, path_or_fileobj=str(info_path)),
        CommitOperationAdd(path_in_repo=CARD_FILE_NAME, path_or_fileobj=card),
    ]
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    uploaded = {operation.path_in_repo for operation in operations}
    operations += [  # shards of an earlier push that this data set no longer has
        CommitOperationDelete(path_in_repo=path)
        for path in api.list_repo_files(repo_id, repo_type="dataset")
        if path.startswith(f"{DATA_DIR}/") and path not in uploaded
    ]
    return api.create_commit(
        repo_id,
        operations,
        commit_message=commit_message or f"Upload {info.spec.name} weight data set with hf_wlora",
        repo_type="dataset",
    )


def push_weight_dataset_to_hub(
    dataset_or_folder: WeightDataset | str | Path,
    repo_id: str,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str | None = None,
) -> CommitInfo:
    """Upload a weight data set to the Hub data set repo `repo_id` (created if needed).

    Uploads the parquet shards under `data/`, `wlora_info.json`, and a `README.md` card rendered from
    `model_cards/weight_dataset_card.md` (its code snippet loads from `repo_id`), in one commit. The repo then holds
    exactly this data set: shards of an earlier push that it does not have (other splits included) are deleted.

    Args:
        dataset_or_folder: A folder finalized by `WeightDatasetWriter` (every split in it is pushed), or a
            `WeightDataset` (its one split is pushed, e.g. a subset).
        repo_id: The data set repo, "user/name".
        private: Create the repo private.
        token: Hub token (default: the logged-in user's).
        commit_message: Message of the data commit.
    """
    if isinstance(dataset_or_folder, WeightDataset):
        with tempfile.TemporaryDirectory() as folder:
            save_weight_dataset(dataset_or_folder, folder)
            return _upload(Path(folder), repo_id, private, token, commit_message)
    return _upload(Path(dataset_or_folder), repo_id, private, token, commit_message)
