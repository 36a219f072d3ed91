"""Configuration of the multiplicative LoRA (mLoRA) tuner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.config import PeftConfig
from peft.utils import PeftType

from ...checks import check_int, check_number, is_int, is_number
from ...spec import DEFAULT_KAPPA, DEFAULT_MASK_RATIO, DEFAULT_MASK_SEED

Mode = Literal["multiplicative", "additive"]
MODES: tuple[str, ...] = ("multiplicative", "additive")
# named inits beside True (identity) and False (random)
NAMED_INITS: tuple[str, ...] = ("gaussian",)


@dataclass
class MLoraConfig(PeftConfig):
    """Configuration of an mLoRA adapter, the per-instance representation of the paper.

    In multiplicative mode a targeted weight W becomes W ⊙ M with M = (alpha / r) B A (element-wise), so M ≈ 1 at
    init and the adapted model starts equal to the base. In additive mode it becomes W + (alpha / r) B A, plain LoRA.
    Both modes share one layer implementation and one saved format (`peft_type="MLORA"`), so a saved adapter can
    never be mistaken for PEFT's own LoRA.

    Args:
        r: Rank of each adapter, any integer >= 1 as in PEFT's LoRA. A rank above min(d_out, d_in) of a layer adds
            no expressiveness there, but it is accepted, so that `target_modules="all-linear"` works on models with a
            narrow head. (A representation spec for encoding keeps the limit; see `hf_wlora.spec.LayerSpec`.)
        alpha: Scale numerator; the factor product is multiplied by alpha / r. Defaults to 1 in multiplicative mode
            (as the paper's authors use) and to r in additive mode (scale 1, as PEFT's LoRA defaults amount to).
        mode: "multiplicative" (mLoRA) or "additive" (LoRA).
        target_modules: Module names (exact or suffix) or a regex, as in PEFT; "all-linear" also works. If None,
            the defaults for the base model's `model_type` are used (the neural fields of hf_wlora have some).
        exclude_modules: Module names or regex to leave out.
        rank_pattern: Per-layer ranks that override `r`, keyed by module name or regex (as in PEFT's LoRA).
        asymmetric_mask: Freeze a fixed, seeded set of entries in each row of A, different for every row and shared
            by every instance, which removes the rank-permutation symmetry (the paper's asymmetric mask). Frozen
            entries are 0 in multiplicative mode and N(0, kappa^2) in additive mode.
        mask_ratio: Fraction of each row of A that is frozen (the paper does not state it; 0.25 by default).
        mask_seed: Seed of the mask positions and frozen values (they are a pure function of seed and layer name).
        kappa: Standard deviation of the frozen values in additive mode.
        init_weights: How the factors start (PEFT's convention: True is a no-op adapter, False a random one).
            - True: an identity. Multiplicative: B = 1 and A = 1 + noise of std `init_std` whose sum over each
              column's trainable rows is zero, so M = (alpha / r) B A = 1 within float rounding while the r rank
              components still differ. Additive: B = 0 and A Kaiming-uniform, as PEFT's LoRA.
            - "gaussian": the paper authors' init for multiplicative mode, A, B ~ N(1, init_std^2) (M ≈ 1 but not
              exactly 1); additive mode: B = 0 and A ~ N(0, 1 / r), as PEFT's LoRA "gaussian". hf_wlora's encoders
              use it for the mLoRA kinds.
            - False: a random adapter that changes the model, only useful for testing.
            In every multiplicative init the mask is compensated (each column of A is rescaled by r over its number
            of trainable rows), so M stays ≈ 1 with frozen zeros.
        init_std: Standard deviation of the multiplicative inits' noise (the authors use 0.01). Never 0: with
            A = B = 1 exactly, every rank component would get identical gradients forever.
        modules_to_save: Extra modules to train and save, as in PEFT.
    """

    r: int = field(default=4, metadata={"help": "Adapter rank."})
    alpha: float | None = field(
        default=None, metadata={"help": "Scale numerator (alpha / r); default 1 (multiplicative) or r (additive)."}
    )
    mode: str = field(default="multiplicative", metadata={"help": "'multiplicative' (mLoRA) or 'additive' (LoRA)."})
    target_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names (exact or suffix), a regex, or 'all-linear'."}
    )
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Module names or regex to skip."})
    rank_pattern: dict[str, int] = field(
        default_factory=dict, metadata={"help": "Per-layer ranks overriding r, keyed by module name or regex."}
    )
    asymmetric_mask: bool = field(default=False, metadata={"help": "Freeze a seeded, row-distinct set of A entries."})
    mask_ratio: float = field(default=DEFAULT_MASK_RATIO, metadata={"help": "Fraction of each row of A frozen."})
    mask_seed: int = field(default=DEFAULT_MASK_SEED, metadata={"help": "Seed of mask positions and frozen values."})
    kappa: float = field(default=DEFAULT_KAPPA, metadata={"help": "Std of frozen values in additive mode."})
    init_weights: bool | str = field(
        default=True,
        metadata={"help": "True: identity; 'gaussian': the authors' N(1, init_std^2) factors; False: random (tests)."},
    )
    init_std: float = field(default=0.01, metadata={"help": "Std of the multiplicative init around 1."})
    modules_to_save: list[str] | None = field(default=None, metadata={"help": "Extra modules to train and save."})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PeftType.MLORA
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}.")
        check_int(self.r, "r", minimum=1)
        bad_ranks = {key: rank for key, rank in self.rank_pattern.items() if not is_int(rank) or rank < 1}
        if bad_ranks:
            raise ValueError(f"Every rank in rank_pattern must be an integer >= 1, got {bad_ranks}.")
        if self.alpha is None:
            self.alpha = 1.0 if self.mode == "multiplicative" else float(self.r)
        check_number(self.alpha, "alpha", positive=True)
        if not isinstance(self.asymmetric_mask, bool):
            raise ValueError(f"asymmetric_mask must be True or False, got {self.asymmetric_mask!r}.")
        check_number(self.mask_ratio, "mask_ratio", fraction=True)
        check_int(self.mask_seed, "mask_seed", minimum=0)
        check_number(self.kappa, "kappa", positive=True)
        if not (isinstance(self.init_weights, bool) or self.init_weights in NAMED_INITS):
            raise ValueError(
                f"init_weights must be True (identity), 'gaussian' (the authors' init) or False (random, for tests); "
                f"got {self.init_weights!r}."
            )
        if not is_number(self.init_std) or not self.init_std > 0:
            raise ValueError(
                f"init_std must be a positive number, got {self.init_std!r}: with A = B = 1 exactly, all rank "
                "components would get identical gradients forever."
            )
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)

    @property
    def multiplicative(self) -> bool:
        return self.mode == "multiplicative"

    @property
    def representation(self) -> str:
        """The paper's name of the representation this adapter is: lora, lora_asym, mlora or mlora_asym."""
        kind = "mlora" if self.multiplicative else "lora"
        return f"{kind}_asym" if self.asymmetric_mask else kind
