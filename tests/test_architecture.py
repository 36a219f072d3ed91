"""The stages import one way, and only through each other's public packages (README, "Architecture").

data -> fields -> tuners -> representations -> encoding -> models -> pipelines -> reproduction; the leaves (spec,
checks, differences, files, metrics, training and the package's own plumbing) may be imported by anyone. A stage
imports another stage only from that stage's packages (`hf_wlora.fields`, `hf_wlora.fields.auto_decoder`, ...), never
from one of its modules or a private name, so a stage can reorganise its modules without breaking the others.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "hf_wlora"
STAGES = ("data", "fields", "tuners", "representations", "encoding", "models", "pipelines", "reproduction")
LEAVES = ("spec", "checks", "differences", "files", "metrics", "training", "resources", "_lazy", "_import_hooks")
# top-level modules above every stage: the demo and the CLI, which wires each stage's command module
TOP = ("demo", "cli")
# the one import of a top-level module by a stage: the small-scale studies run at the demo's tuned budgets
TOP_IMPORTS = {("reproduction", "hf_wlora.demo")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _cross_stage_imports() -> list[tuple[str, str, str, list[str]]]:
    """(importing module, its stage, imported module, names) for every `from hf_wlora... import` between stages."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        stage = module.split(".")[1] if "." in module else ""
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or (
                node.level == 0 and not (node.module or "").startswith("hf_wlora")
            ):
                continue
            target = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            target_stage = target.split(".")[1] if "." in target else ""
            if target_stage not in (stage, "", *LEAVES):
                found.append((module, stage, target, [alias.name for alias in node.names]))
    return found


IMPORTS = _cross_stage_imports()


def test_the_scan_sees_the_stages() -> None:
    # the pipeline decodes with the representation package: a scan that missed it would check nothing
    assert ("hf_wlora.pipelines.pipeline_weight_space", "pipelines", "hf_wlora.representations") in {
        entry[:3] for entry in IMPORTS
    }


@pytest.mark.parametrize("entry", IMPORTS, ids=lambda entry: f"{entry[0]}->{entry[2]}")
def test_stages_import_one_way_through_public_packages(entry: tuple[str, str, str, list[str]]) -> None:
    module, stage, target, names = entry
    target_stage = target.split(".")[1]
    if stage in STAGES and target_stage in STAGES:
        assert STAGES.index(target_stage) < STAGES.index(stage), f"{module} imports {target}, a later stage"
    if stage == "cli":
        return  # the entry point wires each stage's command-line module
    allowed = stage in TOP or target_stage in STAGES or (stage, target) in TOP_IMPORTS
    assert allowed, f"{module} imports the top-level module {target}"
    is_package = (PACKAGE.parent / Path(*target.split(".")) / "__init__.py").is_file()
    assert is_package or target_stage in TOP, f"{module} imports the module {target}; import from its package"
    assert not [name for name in names if name.startswith("_")], f"{module} imports private names of {target}"
