"""`import hf_wlora` is light, and registers with peft and transformers whichever is imported first."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

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


def _lazy_packages() -> list[ModuleType]:
    """Every package of hf_wlora whose public names are imported on first access."""
    import hf_wlora

    names = [hf_wlora.__name__] + [
        info.name for info in pkgutil.walk_packages(hf_wlora.__path__, prefix="hf_wlora.") if info.ispkg
    ]
    packages = [importlib.import_module(name) for name in names]
    return [package for package in packages if hasattr(package, "_LAZY_ATTRIBUTES")]


def _type_checking_imports(package: ModuleType) -> dict[str, str]:
    """name -> absolute module of the imports under `if TYPE_CHECKING:` (what type checkers and IDEs see)."""
    tree = ast.parse(Path(package.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    imports = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        module = importlib.util.resolve_name("." * node.level + (node.module or ""), package.__name__)
        imports.update({alias.name: module for alias in node.names})
    return imports


@pytest.mark.parametrize("package", _lazy_packages(), ids=lambda package: package.__name__)
def test_public_names_resolve_to_their_defining_modules(package: ModuleType) -> None:
    locations = {
        name: importlib.util.resolve_name(location, package.__name__)
        for name, location in package._LAZY_ATTRIBUTES.items()
    }
    # __all__, dir() and the lazy map list the same names; type checkers see the same modules as the runtime
    assert set(package.__all__) - {"__version__"} == set(locations)
    assert dir(package) == sorted(package.__all__)
    assert _type_checking_imports(package) == locations
    for name, location in locations.items():
        value = getattr(package, name)
        assert value is getattr(importlib.import_module(location), name), name
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute 'no_such_name'"):
        package.no_such_name  # noqa: B018
