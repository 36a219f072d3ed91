"""Card templates: Jinja files in the repository's `model_cards/` folder, next to the package in a source checkout."""

from __future__ import annotations

from pathlib import Path

MODEL_CARDS_DIR = Path(__file__).resolve().parent.parent / "model_cards"


def card_template(name: str) -> Path:
    """The path of template `name` (e.g. "field_card.md"); raises if this installation lacks it."""
    path = MODEL_CARDS_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"The card template {path} is missing: install hf_wlora from a source checkout (pip install -e .), "
            "which keeps model_cards/ next to the package."
        )
    return path
