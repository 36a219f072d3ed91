"""The card templates and shipped recipes resolve (the checkout's folders here), and a wheel would ship them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hf_wlora import resources
from hf_wlora.reproduction.config import _paper
from hf_wlora.resources import card_template, recipe, resource_folder

ROOT = Path(__file__).parent.parent
PACKAGE = ROOT / "hf_wlora"


def _template_names_in_code() -> set[str]:
    """Every name passed to `card_template` in the package: a string literal or a module-level string constant."""
    names = set()
    for source in PACKAGE.rglob("*.py"):
        tree = ast.parse(source.read_text(), str(source))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "card_template":
                argument = node.args[0]
                if isinstance(argument, ast.Constant):
                    names.add(argument.value)
                else:
                    assert isinstance(argument, ast.Name) and argument.id in constants, ast.dump(argument)
                    names.add(constants[argument.id])
    return names


def test_every_card_template_the_code_uses_resolves() -> None:
    names = _template_names_in_code()
    assert {"field_card.md", "weight_dataset_card.md", "pipeline_card.md"} <= names
    for name in names:
        path = card_template(name)
        assert path.is_file() and path.parent == ROOT / "model_cards", path


def test_paper_scale_recipes_resolve() -> None:
    for name in ("ffhq.yaml", "shapenet.yaml"):
        assert recipe(name) == ROOT / "recipes" / "configs" / name
    assert _paper("2d").structure_instances == 30 and _paper("3d").data


def test_a_missing_name_is_named_with_the_folder() -> None:
    with pytest.raises(FileNotFoundError, match=r"template 'no_such_card\.md' is not in .*model_cards.*field_card"):
        card_template("no_such_card.md")
    with pytest.raises(FileNotFoundError, match=r"recipe 'no_such\.yaml'"):
        recipe("no_such.yaml")


def test_missing_folders_say_what_to_reinstall(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "PACKAGE_DIR", tmp_path / "hf_wlora")
    with pytest.raises(FileNotFoundError, match=r"no card templates: neither .*hf_wlora/model_cards .*pip install"):
        card_template("field_card.md")
    with pytest.raises(ValueError, match=r"paper scale reads the recipe ffhq\.yaml"):
        _paper("2d")


def test_an_installed_package_folder_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hf_wlora" / "recipe_configs").mkdir(parents=True)
    (tmp_path / "hf_wlora" / "recipe_configs" / "ffhq.yaml").write_text("{}\n")
    (tmp_path / "recipes" / "configs").mkdir(parents=True)
    monkeypatch.setattr(resources, "PACKAGE_DIR", tmp_path / "hf_wlora")
    assert recipe("ffhq.yaml") == tmp_path / "hf_wlora" / "recipe_configs" / "ffhq.yaml"


def test_the_wheel_maps_each_resource_folder_and_ships_every_subpackage() -> None:
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    subpackages = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in PACKAGE.rglob("__init__.py") if init.is_file()
    }
    mapped = {f"hf_wlora.{installed}": checkout for installed, checkout in resources.RESOURCE_FOLDERS.values()}
    assert set(setuptools["packages"]) == subpackages | set(mapped), "list every subpackage in pyproject.toml"
    for package, checkout in mapped.items():
        assert setuptools["package-dir"][package] == checkout
        kind = next(kind for kind, (_, folder) in resources.RESOURCE_FOLDERS.items() if folder == checkout)
        assert resource_folder(kind) == ROOT / checkout
        shipped = setuptools["package-data"][package]
        files = [path for path in (ROOT / checkout).iterdir() if path.is_file()]
        assert files and all(any(path.match(pattern) for pattern in shipped) for path in files), shipped
