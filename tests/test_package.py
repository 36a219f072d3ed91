"""`import hf_wlora` is light, and registers with peft and transformers whichever is imported first."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys, time
start = time.perf_counter()
import hf_wlora
elapsed = time.perf_counter() - start
heavy = sorted(name for name in ("torch", "peft", "transformers", "diffusers", "datasets") if name in sys.modules)
assert not heavy, f"import hf_wlora imported {heavy}"
assert elapsed < 0.5, elapsed
import transformers
from transformers import AutoConfig, AutoModel
config = AutoConfig.for_model("neural_field", modality="image", hidden_size=16)
assert type(AutoModel.from_config(config)).__name__ == "NeuralFieldModel"
from peft import PeftType
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
assert PEFT_TYPE_TO_CONFIG_MAPPING[PeftType("MLORA")] is hf_wlora.MLoraConfig
assert sorted(dir(hf_wlora)) == sorted(hf_wlora.__all__)
print("package-ok")
"""


def test_import_is_light_and_registers_after_import() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "package-ok" in result.stdout


def test_public_names_resolve() -> None:
    import hf_wlora

    for name in hf_wlora.__all__:
        assert getattr(hf_wlora, name) is not None, name
