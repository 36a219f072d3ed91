"""Configuration of the stage-1 neural field (`NeuralFieldConfig`, `model_type="neural_field"`).

One config describes both forms of the field:

* the **modulated** field trained in stage 1 (a mapping network turns a per-instance latent z into styles that
  modulate every layer), and
* the **baked** base field (`baked=True`) that stages 2 and 3 adapt: the modulation of the mean latent z = 0 is
  folded into plain `nn.Linear` layers, so there is no mapping network and no latent.

Validation raises `ValueError` for every bad value (including wrong types), so callers catch one exception type.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedConfig

from ..checks import check_int, is_number

# modality -> (coord_dim, allowed out_dims, default out_dim, default output activation, default Fourier scale)
_MODALITIES: dict[str, tuple[int, tuple[int, ...], int, str, float]] = {
    # RGB (or grayscale) images; sigmoid keeps values in (0, 1) with a gradient everywhere (clamp would zero it).
    "image": (2, (1, 3), 3, "sigmoid", 4.0),
    # signed distance in world units: any real value, so no output activation; lower frequencies than images
    # because SDFs are smooth and high frequencies show up as surface noise under marching cubes.
    "shape": (3, (1,), 1, "none", 2.0),
}
ACTIVATIONS = ("leaky_relu", "relu", "silu", "gelu")
OUTPUT_ACTIVATIONS = ("sigmoid", "clamp", "none")
FOURIER_TYPES = ("gaussian", "log_linear")
_DEFAULT_FOURIER_SCALE = 4.0


class NeuralFieldConfig(PreTrainedConfig):
    r"""Configuration of a [`NeuralFieldModel`]: a coordinate MLP with Fourier features and modulated layers.

    Args:
        modality (`str` or `None`, defaults to `"image"`):
            `"image"` (coords (..., P, 2) in [-1, 1] -> RGB in [0, 1]) or `"shape"` (coords (..., P, 3) -> signed
            distance). Sets `coord_dim`, the default `out_dim`, `output_activation` and `fourier_scale`. `None`
            means a custom field: then `coord_dim` and `out_dim` are required.
        coord_dim (`int`, *optional*): input coordinate dimension (2 for images, 3 for shapes).
        out_dim (`int`, *optional*): output channels (3 for RGB, 1 for grayscale or SDF).
        hidden_size (`int`, defaults to 128): width of every hidden layer.
        num_layers (`int`, defaults to 4): number of residual trunk layers (hidden_size -> hidden_size).
        num_fourier_features (`int`, defaults to 64): number of frequency vectors; the encoding has
            `2 * num_fourier_features` (+ `coord_dim` with `fourier_include_input`) channels.
        fourier_type (`str`, defaults to `"gaussian"`): `"gaussian"` draws the frequency matrix B ~ N(0, scale^2)
            (Tancik et al. 2020); `"log_linear"` uses axis-aligned frequencies spaced log-linearly from 0.5 to
            `fourier_scale` cycles per unit (NeRF-style; needs `num_fourier_features % coord_dim == 0`).
        fourier_scale (`float`, *optional*): Gaussian std, or maximum frequency for log-linear, in cycles per unit
            of coordinate. Defaults by modality: 4.0 for images, 2.0 for shapes.
        fourier_include_input (`bool`, defaults to `True`): also feed the raw coordinates to the first layer.
        fourier_seed (`int`, defaults to 0): seed of the frequency draw. The frequencies are a saved buffer, so a
            loaded model never depends on this seed; it only makes fresh models reproducible.
        latent_dim (`int`, defaults to 64): size of the per-instance latent z.
        mapping_layers (`int`, defaults to 2): depth of the mapping network z -> w (0 means w = z).
        style_dim (`int`, *optional*): size of w, the mapping network's width. Defaults to `latent_dim`.
        activation (`str`, defaults to `"leaky_relu"`): hidden activation (`leaky_relu` slope 0.2 as in
            StyleGAN2/CIPS, `relu`, `silu`, `gelu`), scaled so that E[act(x)^2] = 1 for x ~ N(0, 1).
        output_activation (`str`, *optional*): `"sigmoid"`, `"clamp"` (to [0, 1]) or `"none"`. Defaults by
            modality: sigmoid for images, none for shapes.
        demodulate (`bool`, defaults to `True`): StyleGAN2 weight demodulation in the input and trunk layers.
        residual (`bool`, defaults to `True`): residual trunk, h <- (h + layer(h)) / sqrt(2).
        baked (`bool`, defaults to `False`): plain linear layers with the mean-latent modulation folded in (see
            `NeuralFieldModel.bake`). The latent/mapping fields are then only a record of the source model.
    """

    model_type = "neural_field"

    modality: str | None = "image"
    coord_dim: int | None = None
    out_dim: int | None = None
    hidden_size: int = 128
    num_layers: int = 4
    num_fourier_features: int = 64
    fourier_type: str = "gaussian"
    fourier_scale: float | None = None
    fourier_include_input: bool = True
    fourier_seed: int = 0
    latent_dim: int = 64
    mapping_layers: int = 2
    style_dim: int | None = None
    activation: str = "leaky_relu"
    output_activation: str | None = None
    demodulate: bool = True
    residual: bool = True
    baked: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        self._resolve_modality()
        if self.style_dim is None:
            self.style_dim = self.latent_dim
        self.check()
        super().__post_init__(**kwargs)

    def _resolve_modality(self) -> None:
        """Fill the fields the modality implies; reject explicit values that contradict it."""
        if self.modality is None:
            if self.coord_dim is None or self.out_dim is None:
                raise ValueError("NeuralFieldConfig: with modality=None, both coord_dim and out_dim are required.")
            if self.output_activation is None:
                self.output_activation = "none"
            if self.fourier_scale is None:
                self.fourier_scale = _DEFAULT_FOURIER_SCALE
            return
        if self.modality not in _MODALITIES:
            raise ValueError(
                f"NeuralFieldConfig: unknown modality {self.modality!r}; expected one of {sorted(_MODALITIES)} or None."
            )
        coord_dim, allowed_out, default_out, default_act, default_scale = _MODALITIES[self.modality]
        if self.coord_dim is None:
            self.coord_dim = coord_dim
        elif self.coord_dim != coord_dim:
            raise ValueError(
                f"NeuralFieldConfig: modality {self.modality!r} has coord_dim={coord_dim}, got {self.coord_dim}."
            )
        if self.out_dim is None:
            self.out_dim = default_out
        elif self.out_dim not in allowed_out:
            raise ValueError(
                f"NeuralFieldConfig: modality {self.modality!r} allows out_dim in {allowed_out}, got {self.out_dim}."
            )
        if self.output_activation is None:
            self.output_activation = default_act
        if self.fourier_scale is None:
            self.fourier_scale = default_scale

    def check(self) -> None:
        """Raise `ValueError` if any value is out of range. Also called by the model, after manual edits."""
        positive = {
            "coord_dim": self.coord_dim,
            "out_dim": self.out_dim,
            "hidden_size": self.hidden_size,
            "num_fourier_features": self.num_fourier_features,
            "latent_dim": self.latent_dim,
            "style_dim": self.style_dim,
        }
        for name, value in positive.items():
            check_int(value, f"NeuralFieldConfig: {name}", minimum=1)
        for name, value in {"num_layers": self.num_layers, "mapping_layers": self.mapping_layers}.items():
            check_int(value, f"NeuralFieldConfig: {name}", minimum=0)
        check_int(self.fourier_seed, "NeuralFieldConfig: fourier_seed")
        scale = self.fourier_scale
        if not is_number(scale) or not scale > 0:
            raise ValueError(f"NeuralFieldConfig: fourier_scale must be a positive number, got {scale!r}.")
        choices = {
            "fourier_type": (self.fourier_type, FOURIER_TYPES),
            "activation": (self.activation, ACTIVATIONS),
            "output_activation": (self.output_activation, OUTPUT_ACTIVATIONS),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"NeuralFieldConfig: {name} must be one of {allowed}, got {value!r}.")
        if self.fourier_type == "log_linear" and self.num_fourier_features % self.coord_dim:
            raise ValueError(
                "NeuralFieldConfig: log_linear Fourier features need num_fourier_features divisible by coord_dim "
                f"({self.num_fourier_features} % {self.coord_dim} != 0)."
            )
        for name in ("fourier_include_input", "demodulate", "residual", "baked"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"NeuralFieldConfig: {name} must be a bool, got {getattr(self, name)!r}.")

    @property
    def encoding_dim(self) -> int:
        """Channels of the Fourier encoding fed to the first layer."""
        return 2 * self.num_fourier_features + (self.coord_dim if self.fourier_include_input else 0)

    @classmethod
    def paper_preset(cls, modality: str, **overrides: Any) -> NeuralFieldConfig:
        """A GPU-scale configuration for the paper's data: 128x128 images (FFHQ) or ShapeNet SDFs.

        Width 256 with 6 residual trunk layers (8 linear layers in all) and 256-d latents. The paper does not
        state its base-field size; 256 keeps the per-layer adapter tokens (rank x width) and hence the weight-space
        diffusion transformer affordable (a choice, not the authors' size; benchmark before relying on it). Image
        frequencies go up to ~3 sigma = 24 cycles per unit, under the 32 cycles/unit Nyquist
        limit of 128 pixels over [-1, 1]; shapes use sigma 3. Any field can be overridden by keyword.
        """
        presets: dict[str, dict[str, Any]] = {
            "image": {"num_fourier_features": 256, "fourier_scale": 8.0},
            "shape": {"num_fourier_features": 128, "fourier_scale": 3.0},
        }
        if modality not in presets:
            raise ValueError(f"paper_preset: unknown modality {modality!r}; expected one of {sorted(presets)}.")
        values: dict[str, Any] = {
            "modality": modality,
            "hidden_size": 256,
            "num_layers": 6,
            "latent_dim": 256,
            "style_dim": 256,
            "mapping_layers": 4,
            **presets[modality],
        }
        values.update(overrides)
        return cls(**values)


__all__ = ["NeuralFieldConfig"]
