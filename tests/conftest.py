"""Test-wide environment: no network, an isolated HF cache, and fast, quiet HF libraries.

The variables must be set before anything imports huggingface_hub, which reads them at import time.

Hub tests use an in-process Hub server (`tests/hub_server.py`): its socket is bound here, at import time, so that
`HF_ENDPOINT` can point at it before huggingface_hub is imported. It only serves once a test asks for the
`hub_server` or `hub` fixture; every other test stays offline. A Hub test:

    def test_roundtrip(hub):  # online against the local Hub for this test only
        repo_id = hub.unique_repo_id("tiny-bert")  # "hf-wlora-tester/tiny-bert-3-1a2b3c4d"
        model.push_to_hub(repo_id)
        assert_equal(type(model).from_pretrained(repo_id), model)
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_HF_HOME = tempfile.mkdtemp(prefix="hf_wlora-tests-hf-home-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"  # datasets would HEAD an S3 URL on each load_dataset

if str(Path(__file__).parent) not in sys.path:  # pytest's default import mode already does this
    sys.path.insert(0, str(Path(__file__).parent))

from hub_server import HubServer  # noqa: E402

_HUB_SERVER = HubServer()  # binds 127.0.0.1 on a free port now; serves once a test uses `hub_server`
os.environ["HF_ENDPOINT"] = _HUB_SERVER.url
os.environ["HF_TOKEN"] = _HUB_SERVER.token  # dummy; the server requires it for writes
for _variable in ("NO_PROXY", "no_proxy"):  # never send requests for the local Hub through a proxy
    os.environ[_variable] = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get(_variable)]))

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)


# Module-level copies of the offline flag, read at import time by each library: (module, attributes).
# huggingface_hub.constants.HF_HUB_OFFLINE backs `huggingface_hub.is_offline_mode()`, which huggingface_hub's HTTP
# session and transformers check; peft reads the HF_HUB_OFFLINE environment variable at call time.
_OFFLINE_FLAGS = {
    "huggingface_hub.constants": ("HF_HUB_OFFLINE",),
    "datasets.config": ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"),
    "diffusers.utils.hub_utils": ("HF_HUB_OFFLINE",),
    "diffusers.loaders.lora_base": ("HF_HUB_OFFLINE",),
    "diffusers.models.attention_dispatch": ("HF_HUB_OFFLINE",),
}
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _set_offline_flags(offline: bool) -> None:
    """Set every already-imported library's offline flag (modules imported later read the environment)."""
    for module_name, attributes in _OFFLINE_FLAGS.items():
        module = sys.modules.get(module_name)
        for attribute in attributes if module is not None else ():
            setattr(module, attribute, offline)


@pytest.fixture(scope="session")
def hub_server() -> Iterator[HubServer]:
    """The in-process Hub server at `HF_ENDPOINT`: `.url`, `.token`, `.unique_repo_id(name)`, `.storage`.

    Use the `hub` fixture in tests: this one only serves, it does not lift offline mode.
    """
    _HUB_SERVER.start()
    yield _HUB_SERVER
    _HUB_SERVER.stop()


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """Go online against the test Hub for one test, then back offline; only 127.0.0.1 can be reached meanwhile.

    Yields the `HubServer`. Offline mode is lifted through the environment (read by peft at call time, and by any
    library imported during the test) and the module-level flags in `_OFFLINE_FLAGS`. Warns if the test made the
    server answer an unhandled route or tried to reach another host.
    """
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    if "datasets.config" in sys.modules:  # the parquet-export lookup would go to datasets-server.<HF_ENDPOINT host>
        monkeypatch.setattr(sys.modules["datasets.config"], "USE_PARQUET_EXPORT", False)

    real_getaddrinfo = socket.getaddrinfo
    blocked: list[str] = []

    def local_getaddrinfo(host: str | bytes | None, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in _LOCAL_HOSTS:
            blocked.append(name)
            raise OSError(f"hub fixture: connections to {name!r} are blocked (only 127.0.0.1 may be reached)")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", local_getaddrinfo)
    unhandled_before = len(hub_server.unhandled_requests)
    _set_offline_flags(False)
    try:
        yield hub_server
    finally:
        _set_offline_flags(True)
    # datasets probes "datasets-server.<endpoint host>" for a parquet export when `datasets` is first imported during
    # a hub test (USE_PARQUET_EXPORT is only patched above when it was imported before): expected, blocked, harmless.
    unexpected = sorted({host for host in blocked if not host.startswith("datasets-server.")})
    if unexpected:
        warnings.warn(f"hub fixture blocked connections to {unexpected}", stacklevel=1)
    if len(hub_server.unhandled_requests) > unhandled_before:
        new = hub_server.unhandled_requests[unhandled_before:]
        warnings.warn(f"hub_server got requests it does not handle: {new}", stacklevel=1)


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 32x32 ViT and its image processor, saved the way a user's local backbone would be."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
