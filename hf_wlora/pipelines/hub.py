"""Publishing a `WeightSpacePipeline` on the Hub with its own card.

diffusers' `push_to_hub` saves the pipeline and then writes a generic card over whatever `save_pretrained` wrote;
ours must keep hf_wlora's card, whose code snippet loads from the repo itself, so the folder is written here and
uploaded in one commit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .pipeline_weight_space import WeightSpacePipeline


def push_pipeline_to_hub(
    pipeline: WeightSpacePipeline,
    repo_id: str,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    create_pr: bool = False,
) -> Any:
    """Upload `pipeline` (as `save_pretrained` writes it, card included) to the Hub model repo `repo_id`.

    Files an earlier push left in the components' folders are deleted in the same commit: a stale sharded
    checkpoint's index would take precedence over the new single file when the pipeline is loaded. So is an earlier
    push's picture of samples when this pipeline has none (it would show another model's samples). Other files of
    the repo are kept.
    """
    from huggingface_hub import HfApi

    from .card import SAMPLES_PICTURE

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory() as folder:
        pipeline.save_with_card(Path(folder), load_path=repo_id)
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload WeightSpacePipeline with hf_wlora",
            create_pr=create_pr,
            delete_patterns=[*(f"{name}/*" for name in pipeline.components), SAMPLES_PICTURE],
        )


__all__ = ["push_pipeline_to_hub"]
