"""The in-process Hub server (`tests/hub_server.py`) works with the real Hugging Face client libraries.

Each test uploads through a library's own push/upload API and downloads through its own load API, then compares the
data. The `hub` fixture (conftest.py) lifts offline mode for the duration of one test.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import peft
import pytest
import torch
import transformers
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from huggingface_hub import (
    DatasetCard,
    DatasetCardData,
    HfApi,
    HfFileSystem,
    ModelCard,
    ModelCardData,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors.torch import load_file, save_file

from hub_server import HubServer


@pytest.fixture(autouse=True)
def _no_unhandled_routes(hub_server: HubServer) -> Iterator[None]:
    """Every request these tests trigger must hit a route the server implements."""
    before = len(hub_server.unhandled_requests)
    yield
    assert hub_server.unhandled_requests[before:] == []


def _state_dicts_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# --- huggingface_hub -------------------------------------------------------------------------------------------------


def test_upload_folder_then_download_gives_identical_bytes(hub: HubServer, tmp_path: Path) -> None:
    folder = tmp_path / "upload"
    (folder / "weights").mkdir(parents=True)
    (folder / "notes.txt").write_text("a text file\nwith two lines\n")
    save_file({"w": torch.randn(4, 3), "b": torch.arange(5)}, folder / "weights" / "model.safetensors")
    api = HfApi()
    repo_id = hub.unique_repo_id("upload-folder")

    repo_url = api.create_repo(repo_id)
    commit = api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="add files")

    assert repo_url.repo_id == repo_id
    assert api.repo_info(repo_id).sha == commit.oid
    snapshot = Path(snapshot_download(repo_id, cache_dir=tmp_path / "cache-a"))
    for name in ("notes.txt", "weights/model.safetensors"):
        assert (snapshot / name).read_bytes() == (folder / name).read_bytes()
        single = hf_hub_download(repo_id, name, cache_dir=tmp_path / "cache-b")
        assert Path(single).read_bytes() == (folder / name).read_bytes()
    assert _state_dicts_equal(
        load_file(snapshot / "weights/model.safetensors"), load_file(folder / "weights/model.safetensors")
    )

    # The binary file went through Git LFS; the text file was committed inline. Metadata matches the content.
    tree = api.list_repo_tree(repo_id, recursive=True)
    files = {entry.path: entry for entry in tree if isinstance(entry, huggingface_hub.hf_api.RepoFile)}
    assert files["weights/model.safetensors"].lfs is not None
    assert files["notes.txt"].lfs is None
    metadata = huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(repo_id, "weights/model.safetensors"))
    assert metadata.etag == files["weights/model.safetensors"].lfs.sha256
    assert metadata.size == (folder / "weights/model.safetensors").stat().st_size
    assert metadata.commit_hash == commit.oid


def test_tree_pagination_paths_info_and_range_reads(hub: HubServer) -> None:
    api = HfApi()
    repo_id = hub.unique_repo_id("many-files")
    api.create_repo(repo_id, repo_type="dataset")
    operations = [
        huggingface_hub.CommitOperationAdd(f"data/part-{i:03d}.txt", f"row {i}\n".encode()) for i in range(60)
    ]
    api.create_commit(repo_id, operations, commit_message="many files", repo_type="dataset")

    # expand=True pages by 50 on the Hub (and here): the client must follow the Link header to see all 60 files.
    listed = [e.path for e in api.list_repo_tree(repo_id, "data", repo_type="dataset", expand=True)]
    assert listed == [f"data/part-{i:03d}.txt" for i in range(60)]
    info = api.get_paths_info(repo_id, ["data", "data/part-007.txt", "missing.txt"], repo_type="dataset")
    assert [type(e).__name__ for e in info] == ["RepoFolder", "RepoFile"]
    assert info[1].size == len(b"row 7\n")

    fs = HfFileSystem()
    with fs.open(f"datasets/{repo_id}/data/part-042.txt", "rb") as file:
        file.seek(4)
        assert file.read(2) == b"42"
    assert fs.cat_file(f"datasets/{repo_id}/data/part-042.txt", start=-3) == b"42\n"


def test_revisions_branches_and_deletions(hub: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    repo_id = hub.unique_repo_id("revisions")
    api.create_repo(repo_id)
    first = api.upload_file(path_or_fileobj=b"v1", path_in_repo="file.txt", repo_id=repo_id)
    api.create_branch(repo_id, branch="v1")
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="file.txt", repo_id=repo_id)

    assert Path(hf_hub_download(repo_id, "file.txt", cache_dir=tmp_path)).read_bytes() == b"v2"
    assert Path(hf_hub_download(repo_id, "file.txt", revision="v1", cache_dir=tmp_path)).read_bytes() == b"v1"
    assert Path(hf_hub_download(repo_id, "file.txt", revision=first.oid, cache_dir=tmp_path)).read_bytes() == b"v1"
    assert {ref.name for ref in api.list_repo_refs(repo_id).branches} == {"main", "v1"}
    assert [c.title for c in api.list_repo_commits(repo_id)][:2] == ["Upload file.txt with huggingface_hub"] * 2

    api.delete_file("file.txt", repo_id)
    assert api.list_repo_files(repo_id) == [".gitattributes"]
    assert api.list_repo_files(repo_id, revision="v1") == [".gitattributes", "file.txt"]


def test_private_repos_need_the_token_and_spaces_work(hub: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    private_repo = hub.unique_repo_id("private")
    space_repo = hub.unique_repo_id("space")
    api.create_repo(private_repo, private=True)
    api.upload_file(path_or_fileobj=b"secret", path_in_repo="secret.txt", repo_id=private_repo)
    api.create_repo(space_repo, repo_type="space", space_sdk="static")
    api.upload_file(path_or_fileobj=b"<html></html>", path_in_repo="index.html", repo_id=space_repo, repo_type="space")

    assert api.repo_info(private_repo).private
    assert Path(hf_hub_download(private_repo, "secret.txt", cache_dir=tmp_path)).read_bytes() == b"secret"
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(private_repo, "secret.txt", cache_dir=tmp_path / "anonymous", token=False)
    with pytest.raises(HfHubHTTPError, match="401"):
        HfApi(token=False).create_repo(hub.unique_repo_id("anonymous"))
    assert api.space_info(space_repo).sdk == "static"
    downloaded = hf_hub_download(space_repo, "index.html", repo_type="space", cache_dir=tmp_path)
    assert Path(downloaded).read_bytes() == b"<html></html>"


# --- transformers, PEFT, diffusers -----------------------------------------------------------------------------------


def test_transformers_model_push_to_hub_and_from_pretrained(hub: HubServer) -> None:
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
    )
    model = transformers.BertModel(config).eval()
    repo_id = hub.unique_repo_id("tiny-bert")

    model.push_to_hub(repo_id)
    loaded = transformers.BertModel.from_pretrained(repo_id).eval()

    assert _state_dicts_equal(loaded.state_dict(), model.state_dict())
    assert loaded.config.hidden_size == 8
    assert "model.safetensors" in HfApi().list_repo_files(repo_id)


class _TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(6, 5)
        self.head = torch.nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.proj(x)))


def test_peft_lora_adapter_push_to_hub_and_from_pretrained(hub: HubServer) -> None:
    torch.manual_seed(1)
    base_state = _TinyNet().state_dict()
    base = _TinyNet()
    base.load_state_dict(base_state)
    lora = peft.LoraConfig(r=2, lora_alpha=4, target_modules=["proj", "head"], init_lora_weights=False)
    model = peft.get_peft_model(base, lora).eval()
    x = torch.randn(4, 6)
    expected = model(x)
    repo_id = hub.unique_repo_id("tiny-lora")

    model.push_to_hub(repo_id)
    fresh_base = _TinyNet()
    fresh_base.load_state_dict(base_state)
    plain_output = fresh_base(x)
    loaded = peft.PeftModel.from_pretrained(fresh_base, repo_id).eval()

    assert torch.allclose(loaded(x), expected)
    assert not torch.allclose(plain_output, expected)  # the adapter changes the output
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(HfApi().list_repo_files(repo_id))


class _TinyDiffusersModel(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, channels: int = 3, hidden: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, hidden, 1)

    def forward(self, x: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        return (self.conv(x),)


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")  # diffusers passes it
def test_diffusers_model_push_to_hub_and_from_pretrained(hub: HubServer) -> None:
    model = _TinyDiffusersModel(channels=2, hidden=5)
    repo_id = hub.unique_repo_id("tiny-diffusers")

    model.push_to_hub(repo_id)
    loaded = _TinyDiffusersModel.from_pretrained(repo_id)

    assert {k: v for k, v in loaded.config.items() if k != "_name_or_path"} == dict(model.config)
    assert loaded.config.hidden == 5
    assert _state_dicts_equal(loaded.state_dict(), model.state_dict())


# --- datasets and cards ----------------------------------------------------------------------------------------------


def test_dataset_push_to_hub_and_load_dataset(hub: HubServer) -> None:
    features = datasets.Features(
        {"weights": datasets.Array2D(shape=(2, 3), dtype="float32"), "label": datasets.Value("int64")}
    )
    values = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    dataset = datasets.Dataset.from_dict({"weights": values, "label": list(range(5))}, features=features)
    repo_id = hub.unique_repo_id("array2d")

    dataset.push_to_hub(repo_id)
    loaded = datasets.load_dataset(repo_id, split="train").with_format("numpy")

    assert loaded.features == features
    np.testing.assert_array_equal(loaded["weights"], values)
    np.testing.assert_array_equal(loaded["label"], np.arange(5))
    parquet = [f for f in HfApi().list_repo_files(repo_id, repo_type="dataset") if f.endswith(".parquet")]
    assert parquet == ["data/train-00000-of-00001.parquet"]


def test_model_and_dataset_cards_roundtrip(hub: HubServer) -> None:
    api = HfApi()
    model_repo = hub.unique_repo_id("model-card")
    dataset_repo = hub.unique_repo_id("dataset-card")
    api.create_repo(model_repo)
    api.create_repo(dataset_repo, repo_type="dataset")
    model_card = ModelCard.from_template(
        ModelCardData(library_name="hf_wlora", license="apache-2.0", tags=["weight-space"]),
        model_description="A tiny test model.",
    )
    dataset_card = DatasetCard.from_template(DatasetCardData(license="mit", tags=["weights"]), pretty_name="Tiny")

    model_card.push_to_hub(model_repo)
    dataset_card.push_to_hub(dataset_repo)
    loaded_model_card = ModelCard.load(model_repo)
    loaded_dataset_card = DatasetCard.load(dataset_repo, repo_type="dataset")

    assert loaded_model_card.data.to_dict() == model_card.data.to_dict()
    assert loaded_model_card.text == model_card.text
    assert str(loaded_model_card) == str(model_card)
    assert loaded_dataset_card.data.to_dict() == dataset_card.data.to_dict()
    assert str(loaded_dataset_card) == str(dataset_card)


# --- errors and isolation --------------------------------------------------------------------------------------------


def test_missing_repo_revision_and_file_raise_not_found_errors(hub: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    repo_id = hub.unique_repo_id("exists")
    api.create_repo(repo_id)
    missing_repo = hub.unique_repo_id("never-created")

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(missing_repo, "config.json", cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        api.repo_info(missing_repo, repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, ".gitattributes", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "config.json", cache_dir=tmp_path)
    with pytest.raises(OSError, match=r"not a valid model identifier|does not appear to have"):
        transformers.BertModel.from_pretrained(missing_repo)
    with pytest.raises(OSError, match="does not appear to have"):
        transformers.BertModel.from_pretrained(repo_id)
    with pytest.raises(datasets.exceptions.DatasetNotFoundError):
        datasets.load_dataset(missing_repo)
    with pytest.raises(EntryNotFoundError):
        ModelCard.load(repo_id)
    with pytest.raises(HfHubHTTPError, match="409"):
        api.create_repo(repo_id)
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id


def test_server_rejects_bad_lfs_upload_and_reports_unknown_routes(hub_server: HubServer) -> None:
    bad = urllib.request.Request(f"{hub_server.url}/lfs-upload/{'0' * 64}", data=b"not matching", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as bad_upload:
        urllib.request.urlopen(bad)
    assert bad_upload.value.code == 400

    before = len(hub_server.unhandled_requests)
    with pytest.raises(urllib.error.HTTPError) as unknown:
        urllib.request.urlopen(f"{hub_server.url}/api/not-a-route")
    assert unknown.value.code == 404
    assert json.loads(unknown.value.read())["error"].startswith("Unhandled route")
    assert hub_server.unhandled_requests[before:] == ["GET /api/not-a-route"]
    del hub_server.unhandled_requests[before:]


def test_tests_without_the_hub_fixture_stay_offline(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi()
    assert hub_server.url == huggingface_hub.constants.ENDPOINT
    assert huggingface_hub.is_offline_mode()
    assert datasets.config.HF_HUB_OFFLINE
    with pytest.raises((LocalEntryNotFoundError, OfflineModeIsEnabled)):
        hf_hub_download("some-user/some-repo", "config.json", cache_dir=tmp_path)
    with pytest.raises(OfflineModeIsEnabled):
        api.whoami()
