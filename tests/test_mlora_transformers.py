"""mLoRA on transformers architectures built from small configs: GPT-2 (Conv1D), BERT with its 2-class head at r = 8,
ViT with target_modules="all-linear", and Llama with and without the mask.

Each one starts at the base model, trains, and gives the same outputs after save_pretrained and a reload in a fresh
process, and after merge_and_unload.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file, save_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
)
from transformers.pytorch_utils import Conv1D

from hf_wlora import MLoraConfig
from hf_wlora.tuners.mlora import MLoraLayer

SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
# A random-init language model memorising 48 tokens of a 100-token vocabulary moves slowly (measured: 0.92 to 0.94
# in 20 steps); the classifiers fit their 4 labels fast (0.20 for BERT, 0.02 for ViT).
LANGUAGE_MODEL_LOSS_RATIO, CLASSIFIER_LOSS_RATIO = 0.96, 0.5
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Case:
    make_model: Callable[[], PreTrainedModel]
    config: MLoraConfig
    make_inputs: Callable[[torch.Generator], dict[str, torch.Tensor]]
    output: str  # the output field to compare
    max_loss_ratio: float  # last over first training loss, with margin over what was measured


def _tokens(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 100, (4, 12), generator=generator)}


def _pixels(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(4, 3, 16, 16, generator=generator)}


def _labels(inputs: dict[str, torch.Tensor], logits: torch.Tensor) -> torch.Tensor:
    """The model's own training labels: the tokens themselves for a language model, fixed classes otherwise."""
    if logits.dim() == 3:
        return inputs["input_ids"]
    return torch.arange(len(logits)) % logits.shape[-1]


CASES = {
    "gpt2": Case(
        lambda: GPT2LMHeadModel(
            GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0)
        ),
        MLoraConfig(r=4, target_modules=["c_attn", "c_proj", "c_fc"], asymmetric_mask=True),
        _tokens,
        "logits",
        LANGUAGE_MODEL_LOSS_RATIO,
    ),
    "bert": Case(
        lambda: BertForSequenceClassification(BertConfig(vocab_size=100, num_labels=2, **SMALL)),
        # the 2-class head is 2 x 32, so r = 8 exceeds its rank
        MLoraConfig(r=8, target_modules=["query", "key", "value", "dense", "classifier"]),
        _tokens,
        "logits",
        CLASSIFIER_LOSS_RATIO,
    ),
    "vit": Case(
        lambda: ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, num_labels=3, **SMALL)),
        MLoraConfig(r=4, target_modules="all-linear", asymmetric_mask=True),
        _pixels,
        "logits",
        CLASSIFIER_LOSS_RATIO,
    ),
    "llama": Case(
        lambda: LlamaForCausalLM(LlamaConfig(vocab_size=100, num_key_value_heads=1, **SMALL)),
        MLoraConfig(r=4, target_modules=LLAMA_TARGETS),
        _tokens,
        "logits",
        LANGUAGE_MODEL_LOSS_RATIO,
    ),
    "llama-asym": Case(
        lambda: LlamaForCausalLM(LlamaConfig(vocab_size=100, num_key_value_heads=1, **SMALL)),
        MLoraConfig(r=4, target_modules=LLAMA_TARGETS, asymmetric_mask=True),
        _tokens,
        "logits",
        LANGUAGE_MODEL_LOSS_RATIO,
    ),
    "llama-additive": Case(
        lambda: LlamaForCausalLM(LlamaConfig(vocab_size=100, num_key_value_heads=1, **SMALL)),
        MLoraConfig(r=4, target_modules=LLAMA_TARGETS, mode="additive"),
        _tokens,
        "logits",
        LANGUAGE_MODEL_LOSS_RATIO,
    ),
}


@dataclass
class Trained:
    base_dir: Path
    adapter_dir: Path
    inputs: dict[str, torch.Tensor]
    base_output: torch.Tensor
    init_output: torch.Tensor
    losses: list[float]
    output: torch.Tensor
    merged_output: torch.Tensor
    adapted_types: set[type]


def _train(name: str, case: Case, folder: Path) -> Trained:
    torch.manual_seed(0)
    base = case.make_model().eval()
    base.save_pretrained(folder / "base")
    inputs = case.make_inputs(torch.Generator().manual_seed(1))
    with torch.no_grad():
        base_output = getattr(base(**inputs), case.output)
    model = get_peft_model(copy.deepcopy(base), copy.deepcopy(case.config)).eval()
    adapted_types = {type(module.get_base_layer()) for module in model.modules() if isinstance(module, MLoraLayer)}
    with torch.no_grad():
        init_output = getattr(model(**inputs), case.output)
    labels = _labels(inputs, base_output)
    # mLoRA's factors travel distances of order 1 (M from 1 towards 0 or 2); additive LoRA's only as far as the
    # weight change itself, and diverges at mLoRA's rate (hf_wlora's encoding defaults, for the same reason)
    learning_rate = 1e-1 if case.config.multiplicative else 1e-2
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.save_pretrained(folder / "adapter")
    with torch.no_grad():
        output = getattr(model(**inputs), case.output)
        merged_output = getattr(model.merge_and_unload()(**inputs), case.output)
    save_file(inputs, folder / "inputs.safetensors")
    return Trained(
        folder / "base",
        folder / "adapter",
        inputs,
        base_output,
        init_output,
        losses,
        output,
        merged_output,
        adapted_types,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    root = tmp_path_factory.mktemp("mlora-transformers")
    return {name: _train(name, case, root / name) for name, case in CASES.items()}


@pytest.mark.parametrize("name", CASES)
def test_starts_at_the_base_model(trained: dict[str, Trained], name: str) -> None:
    torch.testing.assert_close(trained[name].init_output, trained[name].base_output, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", CASES)
def test_trains(trained: dict[str, Trained], name: str) -> None:
    losses = trained[name].losses
    assert losses[-1] < CASES[name].max_loss_ratio * losses[0], losses
    assert (trained[name].output - trained[name].base_output).abs().max() > 1e-2


@pytest.mark.parametrize("name", CASES)
def test_merge_and_unload_gives_the_same_outputs(trained: dict[str, Trained], name: str) -> None:
    torch.testing.assert_close(trained[name].merged_output, trained[name].output, rtol=1e-4, atol=1e-4)


def test_adapted_layer_types(trained: dict[str, Trained]) -> None:
    assert trained["gpt2"].adapted_types == {Conv1D}
    assert trained["vit"].adapted_types == {torch.nn.Linear}


def test_vit_all_linear_adapts_every_linear_including_the_narrow_head() -> None:
    torch.manual_seed(0)
    model = get_peft_model(CASES["vit"].make_model(), copy.deepcopy(CASES["vit"].config))
    layers = {module.layer_key: module for module in model.modules() if isinstance(module, MLoraLayer)}
    linear = {name for name, module in CASES["vit"].make_model().named_modules() if isinstance(module, torch.nn.Linear)}
    assert set(layers) == linear
    # the 3-class head is 3 x 32: r = 4 exceeds its rank, which PEFT's LoRA accepts too
    assert (layers["classifier"].out_features, layers["classifier"].r["default"]) == (3, 4)


def test_reload_in_a_fresh_process_gives_the_same_outputs(trained: dict[str, Trained]) -> None:
    for result in trained.values():
        save_file({"output": result.output}, result.base_dir.parent / "expected.safetensors")
    folders = {name: str(result.base_dir.parent) for name, result in trained.items()}
    script = f"""
import json, sys, torch
from pathlib import Path
import hf_wlora  # registers the tuner
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForImageClassification, AutoModelForSequenceClassification
auto = {{"gpt2": AutoModelForCausalLM, "bert": AutoModelForSequenceClassification,
         "vit": AutoModelForImageClassification}}
differences = {{}}
for name, folder in json.loads({json.dumps(json.dumps(folders))}).items():
    folder = Path(folder)
    base = auto.get(name, AutoModelForCausalLM).from_pretrained(folder / "base").eval()
    model = PeftModel.from_pretrained(base, folder / "adapter").eval()
    inputs = load_file(folder / "inputs.safetensors")
    with torch.no_grad():
        output = model(**inputs).logits
    expected = load_file(folder / "expected.safetensors")["output"]
    differences[name] = (output - expected).abs().max().item()
print(json.dumps(differences))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    differences = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(differences) == set(CASES)
    assert max(differences.values()) < 1e-5, differences
    for result in trained.values():
        assert load_file(result.adapter_dir / "adapter_model.safetensors")  # safetensors, as saved
