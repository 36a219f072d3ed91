"""SIGKILL at random moments: every resumed run ends exactly where an uninterrupted one does.

The runs are real processes killed with SIGKILL (no exception handler, no atexit), at moments drawn from a fixed
seed: while encoding a batch, while committing a part, while saving a checkpoint. Each is resumed by running the same
command again, as a user would, until it finishes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from stage3_helpers import make_field, save_image_field, write_weight_dataset
from test_encode import assert_same_weights
from test_generator_training import TINY_MODEL, final_state

from hf_wlora.encoding import load_weight_dataset
from hf_wlora.encoding.writer import PROGRESS_DIR

ENCODE = """
import sys
from hf_wlora.encoding.encoder import EncodeConfig, encode
options = {"num_instances": 16, "resolution": 10}
encode(EncodeConfig(field=sys.argv[1], output_dir=sys.argv[2], data_options=options, steps=150, batch_size=2),
       progress=False)
"""

TRAIN = """
import json, sys
from hf_wlora.pipelines.generator_training import GeneratorTrainingConfig, train_generator
train_generator(GeneratorTrainingConfig(**json.loads(sys.argv[1])))
"""
KILLS = 4


def run_until_done(
    script: str, arguments: list[str], progress: Callable[[], int], seed: int, kills: int = KILLS
) -> list[int]:
    """Run `script` again and again, SIGKILLing it `kills` times once `progress()` has moved 1 to 3 units past where
    that attempt started (plus a random delay), then once more to the end. Returns the progress at each kill."""
    draw = random.Random(seed)
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed_at = []
    for attempt in range(kills + 1):
        process = subprocess.Popen(
            [sys.executable, "-c", script, *arguments], env=environment, stderr=subprocess.PIPE, text=True
        )
        if attempt < kills:
            target = progress() + draw.randint(1, 3)
            while process.poll() is None and progress() < target:
                time.sleep(0.01)
            time.sleep(draw.uniform(0.0, 0.2))
            if process.poll() is None:
                killed_at.append(progress())
                process.send_signal(signal.SIGKILL)
        _, errors = process.communicate(timeout=300)
        if process.returncode == 0:
            return killed_at
        assert process.returncode == -signal.SIGKILL, errors[-3000:]
    raise AssertionError("the run did not finish after its last resume")


def committed_parts(output_dir: Path) -> int:
    progress = output_dir / PROGRESS_DIR / "train" / "progress-00000.jsonl"
    return len(progress.read_text().splitlines()) if progress.is_file() else 0


def test_an_encoding_killed_at_random_moments_writes_every_instance_once(tmp_path: Path) -> None:
    field = save_image_field(tmp_path / "field")
    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_until_done(ENCODE, [str(field), str(reference)], lambda: 0, seed=0, kills=0) == []
    killed_at = run_until_done(ENCODE, [str(field), str(killed)], lambda: committed_parts(killed), seed=0)
    assert len(killed_at) >= 2, f"too few kills landed during the encoding: {killed_at}"
    assert_same_weights(reference, killed)  # bit-identical rows, each instance once, in order
    assert len(load_weight_dataset(killed)) == 16


def newest_checkpoint(output_dir: Path) -> int:
    """The step of the newest complete checkpoint, in checkpoints (of 5 steps each)."""
    root = output_dir / "checkpoints"
    steps = [int(path.name[5:]) for path in root.glob("step-*") if path.is_dir() and path.name[5:].isdigit()]
    return max(steps, default=0) // 5


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stage3")
    make_field().save_pretrained(root / "field")
    return write_weight_dataset(root / "weights", root / "field")


def test_generator_training_killed_at_random_moments_ends_with_the_same_weights(
    weights_dir: Path, tmp_path: Path
) -> None:
    def settings(output_dir: Path) -> list[str]:
        values = {
            **{"weights": str(weights_dir), "output_dir": str(output_dir), "model": TINY_MODEL, "steps": 60},
            **{"batch_size": 8, "learning_rate": 2e-3, "warmup_steps": 5, "checkpoint_every": 5, "resume": True},
            **{"keep_checkpoints": 2, "num_grid_samples": 4, "sample_inference_steps": 4, "eval_noise_draws": 2},
        }
        return [json.dumps(values)]

    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"
    assert run_until_done(TRAIN, settings(reference), lambda: 0, seed=1, kills=0) == []
    killed_at = run_until_done(TRAIN, settings(killed), lambda: newest_checkpoint(killed), seed=1)
    assert len(killed_at) >= 2, f"too few kills landed during the training: {killed_at}"
    expected, state = final_state(reference), final_state(killed)
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[key], value) for key, value in expected.items())
