"""The files hf_wlora reads that are not Python: the Jinja card templates and the paper-scale recipes.

In git they live only in top-level folders of the repository, `model_cards/` and `recipes/configs/`. A wheel (or any
non-editable install) ships them inside the package, as `hf_wlora/model_cards/` and `hf_wlora/recipe_configs/`
(the `package-dir` mapping in pyproject.toml). An editable install (`pip install -e .`), or a checkout on
`sys.path`, keeps the package next to those folders. The lookup takes the installed folder where it exists, and
otherwise the checkout's folder beside the package.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# what: (its folder inside an installed package, its folder in a source checkout, relative to the checkout's root)
RESOURCE_FOLDERS = {
    "card template": ("model_cards", "model_cards"),
    "recipe": ("recipe_configs", "recipes/configs"),
}


def resource_folder(kind: str) -> Path:
    """The folder holding the resources of `kind` ("card template" or "recipe") in this installation."""
    if kind not in RESOURCE_FOLDERS:
        raise ValueError(f"kind must be one of {sorted(RESOURCE_FOLDERS)}, got {kind!r}.")
    installed_folder, checkout_folder = RESOURCE_FOLDERS[kind]
    installed, checkout = PACKAGE_DIR / installed_folder, PACKAGE_DIR.parent / checkout_folder
    for folder in (installed, checkout):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(
        f"This installation of hf_wlora has no {kind}s: neither {installed} (an installed wheel) nor {checkout} "
        "(a source checkout or editable install) exists. Reinstall it: `pip install .` or `pip install -e .` "
        "from a checkout, or `pip install` a wheel built from one."
    )


def resource_file(kind: str, name: str) -> Path:
    """The path of resource `name` of `kind`; raises FileNotFoundError naming what is missing and where it looked."""
    folder = resource_folder(kind)
    path = folder / name
    if not path.is_file():
        present = ", ".join(sorted(entry.name for entry in folder.iterdir() if entry.is_file())) or "none"
        raise FileNotFoundError(f"The {kind} {name!r} is not in {folder} (it holds: {present}).")
    return path


def card_template(name: str) -> Path:
    """The path of card template `name` (e.g. "field_card.md")."""
    return resource_file("card template", name)


def recipe(name: str) -> Path:
    """The path of the shipped recipe `name` (e.g. "ffhq.yaml")."""
    return resource_file("recipe", name)


__all__ = ["card_template", "recipe", "resource_file", "resource_folder"]
