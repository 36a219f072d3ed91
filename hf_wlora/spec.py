"""The representation spec: the single source of truth for what a weight representation is.

A `RepresentationSpec` names one of the six representations of the paper (mlp, mlp_asym, lora, lora_asym, mlora,
mlora_asym), lists the adapted layers with their shapes and ranks, and carries alpha and the asymmetric-mask
settings. The fitter, the weight data set schema, the diffusion model's tokeniser and the pipeline's decoder all
derive shapes, masks and frozen values from it, so none of them defines those a second time.

Masks and frozen values are drawn from a counter-based hash (SplitMix64) of (seed, layer name, position), not from
torch's or numpy's random generators: the same spec gives bit-identical masks in every process, on every machine and
in every library version, which is what lets a weight data set published today be decoded years later.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .checks import check_int

Kind = Literal["mlp", "lora", "mlora"]
KINDS: tuple[str, ...] = ("mlp", "lora", "mlora")
REPRESENTATIONS: tuple[str, ...] = ("mlp", "mlp_asym", "lora", "lora_asym", "mlora", "mlora_asym")

DEFAULT_MASK_RATIO = 0.25
DEFAULT_MASK_SEED = 0
DEFAULT_KAPPA = 1.0
SPEC_FILE_NAME = "representation_spec.json"

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MAX_MASK_ATTEMPTS = 64


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic), a well-tested counter-based mixer."""
    z = x.astype(np.uint64, copy=True)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash_stream(seed: int, key: str, count: int) -> np.ndarray:
    """`count` pseudo-random uint64 values, a pure function of (seed, key): stable across versions and machines."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    start = np.uint64((seed * 0x9E3779B97F4A7C15 + (zlib.crc32(key.encode("utf-8")) << 1)) % 2**64)
    counters = start + (np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN)
    return _splitmix64(counters)


def _hash_unit_interval(seed: int, key: str, count: int) -> np.ndarray:
    """Uniform float64 values in the open interval (0, 1)."""
    return ((hash_stream(seed, key, count) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def hash_normal(shape: Sequence[int], seed: int, key: str) -> torch.Tensor:
    """Standard normal float32 values of `shape` (Box-Muller on the hash stream)."""
    count = math.prod(shape)
    uniforms = _hash_unit_interval(seed, key, 2 * count)
    radius = np.sqrt(-2.0 * np.log(uniforms[:count]))
    values = radius * np.cos(2.0 * np.pi * uniforms[count:])
    return torch.from_numpy(values.reshape(tuple(shape)).astype(np.float32))


def asymmetric_mask(
    rows: int,
    cols: int,
    ratio: float,
    seed: int,
    key: str,
    keep_every_column: bool,
) -> torch.Tensor:
    """The frozen-entry mask of one factor: a (rows, cols) bool tensor, True where the entry is frozen.

    Every row freezes `round(ratio * cols)` entries, and no two rows freeze the same set of columns (that is what
    removes the rank-permutation symmetry). With `keep_every_column` (multiplicative LoRA, whose frozen entries are
    zeros) each column keeps at least one trainable row, so no input channel is switched off for good: column j is
    assigned a keeper row that never masks it, and each row draws its masked columns among the rest.

    The draw is deterministic in (seed, key); `key` is normally the layer name.
    """
    num_masked = round(ratio * cols)
    where = f"layer {key!r} (factor of shape {rows}x{cols}, mask_ratio={ratio})"
    if num_masked == 0:
        if rows == 1:
            return torch.zeros(1, cols, dtype=torch.bool)
        raise ValueError(
            f"The asymmetric mask of {where} would freeze no entry, so its rows cannot differ. Raise mask_ratio to at "
            f"least {0.5 / cols:.3g}, or exclude this layer from the adapted layers."
        )
    if keep_every_column:
        if rows == 1:
            raise ValueError(
                f"The asymmetric mask of {where} needs r >= 2 in multiplicative mode: with a single rank component "
                "a zero entry would switch its input channel off for good, and r = 1 has no rank permutation to "
                "break. Use r >= 2, or asymmetric_mask=False for this adapter."
            )
        most_per_row = cols - math.ceil(cols / rows)
        if num_masked > most_per_row:
            raise ValueError(
                f"The asymmetric mask of {where} freezes {num_masked} zeros per row, but at most {most_per_row} fit "
                f"while every input channel keeps a trainable entry. Lower mask_ratio to at most "
                f"{most_per_row / cols:.3g}."
            )
    elif num_masked >= cols:
        raise ValueError(f"The asymmetric mask of {where} would freeze every entry of a row. Lower mask_ratio.")
    elif math.comb(cols, num_masked) < rows:
        raise ValueError(
            f"The asymmetric mask of {where} cannot give {rows} rows distinct sets of {num_masked} frozen entries "
            f"(only {math.comb(cols, num_masked)} sets exist). Lower r, change mask_ratio, or exclude this layer."
        )
    for attempt in range(_MAX_MASK_ATTEMPTS):
        mask = _draw_mask(rows, cols, num_masked, seed, f"{key}#{attempt}", keep_every_column)
        if len({row.tobytes() for row in mask}) == rows:
            return torch.from_numpy(mask)
    raise ValueError(
        f"Could not draw distinct rows for the asymmetric mask of {where} in {_MAX_MASK_ATTEMPTS} attempts; the "
        "layer is too small for this rank. Lower r or exclude this layer."
    )


def _draw_mask(rows: int, cols: int, num_masked: int, seed: int, key: str, keep_every_column: bool) -> np.ndarray:
    priority = hash_stream(seed, key, rows * cols).reshape(rows, cols)
    eligible = np.ones((rows, cols), dtype=bool)
    if keep_every_column:
        column_order = np.argsort(hash_stream(seed, key + "/keepers", cols), kind="stable")
        keeper = np.empty(cols, dtype=np.int64)
        keeper[column_order] = np.arange(cols) % rows
        eligible[keeper, np.arange(cols)] = False
    # Ineligible entries sort last, so each row masks its `num_masked` eligible entries of lowest priority.
    ranked = np.argsort(np.where(eligible, priority, np.iinfo(np.uint64).max), axis=1, kind="stable")
    mask = np.zeros((rows, cols), dtype=bool)
    np.put_along_axis(mask, ranked[:, :num_masked], True, axis=1)
    return mask


def frozen_values(rows: int, cols: int, zeros: bool, kappa: float, seed: int, key: str) -> torch.Tensor:
    """Values of a factor's frozen entries (meaningful where its mask is True).

    Zeros for multiplicative LoRA (a zero gates a rank component off for one input channel); N(0, kappa^2) for the
    additive kinds and the plain MLP, as in the paper.
    """
    if zeros:
        return torch.zeros(rows, cols)
    return kappa * hash_normal((rows, cols), seed, f"{key}/frozen")


def count_unfrozen(factor: torch.Tensor, mask: torch.Tensor, values: torch.Tensor) -> int:
    """How many frozen entries (`mask` True) of `factor` differ from their fixed `values`.

    Compared exactly, in the factor's dtype: frozen entries are stored as the very values the layer uses, so any
    difference means the factor belongs to another mask (or no mask), not to rounding.
    """
    expected = values.to(device=factor.device, dtype=factor.dtype)
    return int((mask.to(factor.device) & (factor != expected)).sum())


@dataclass(frozen=True)
class LayerSpec:
    """One adapted layer.

    `d_out` x `d_in` is the weight's 2-D view (a convolution's weight is viewed as out x (in/groups * kernel size),
    an embedding's as num_embeddings x embedding_dim). `r` is the adapter rank (None for the mlp kinds, which train
    the whole weight). `bias` says whether an mlp-kind layer also trains its bias.
    """

    name: str
    d_out: int
    d_in: int
    r: int | None = None
    bias: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("A LayerSpec needs a non-empty name.")
        if self.d_out < 1 or self.d_in < 1:
            raise ValueError(f"Layer {self.name!r} has shape {self.d_out}x{self.d_in}; both sizes must be >= 1.")
        if self.r is not None:
            check_rank(self.name, self.r, self.d_out, self.d_in)


def check_rank(name: str, r: int, d_out: int, d_in: int) -> None:
    """Raise a ValueError unless 1 <= r <= min(d_out, d_in), the largest rank a d_out x d_in factorisation has."""
    check_int(r, f"The rank r of layer {name!r}", minimum=1)
    if r > min(d_out, d_in):
        raise ValueError(
            f"Rank r={r} is larger than layer {name!r} allows: its weight is {d_out}x{d_in}, so its rank is at most "
            f"{min(d_out, d_in)}. Lower r, set a smaller rank for this layer with rank_pattern, or leave the layer "
            "out of target_modules."
        )


@dataclass(frozen=True)
class RepresentationSpec:
    """What one weight representation is: kind, mask, and the adapted layers in a fixed order.

    Factor names are `"{layer}.A"` (r x d_in) and `"{layer}.B"` (d_out x r) for the LoRA kinds, and
    `"{layer}.weight"` (d_out x d_in) plus `"{layer}.bias"` (d_out,) for the mlp kinds. The asymmetric mask applies
    to A for the LoRA kinds and to the weight for the mlp kinds; frozen entries are 0 for mlora and N(0, kappa^2)
    otherwise.
    """

    kind: Kind
    layers: tuple[LayerSpec, ...]
    asymmetric: bool = False
    alpha: float = 1.0
    mask_ratio: float = DEFAULT_MASK_RATIO
    mask_seed: int = DEFAULT_MASK_SEED
    kappa: float = DEFAULT_KAPPA
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.kind not in KINDS:
            raise ValueError(f"Unknown kind {self.kind!r}; expected one of {KINDS}.")
        if not self.layers:
            raise ValueError("A RepresentationSpec needs at least one layer.")
        names = [layer.name for layer in self.layers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"Layer names must be unique; repeated: {duplicates}.")
        for layer in self.layers:
            if self.kind == "mlp" and layer.r is not None:
                raise ValueError(
                    f"Layer {layer.name!r} has r={layer.r}, but the mlp kinds train whole weights: r=None."
                )
            if self.kind != "mlp" and layer.r is None:
                raise ValueError(f"Layer {layer.name!r} needs a rank r for kind {self.kind!r}.")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}.")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}.")
        if not self.kappa > 0:
            raise ValueError(f"kappa must be > 0, got {self.kappa}.")
        if self.asymmetric:
            for layer in self.layers:  # fail now, not halfway through an encoding run
                self.mask(layer.name)

    # -- names ---------------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The paper's name of this representation, e.g. "mlora_asym"."""
        return f"{self.kind}_asym" if self.asymmetric else self.kind

    @classmethod
    def from_name(cls, name: str, layers: Iterable[LayerSpec], **kwargs: Any) -> RepresentationSpec:
        """Build a spec from one of the six representation names (see `REPRESENTATIONS`)."""
        if name not in REPRESENTATIONS:
            raise ValueError(f"Unknown representation {name!r}; expected one of {REPRESENTATIONS}.")
        kind, _, suffix = name.partition("_")
        return cls(kind=kind, layers=tuple(layers), asymmetric=suffix == "asym", **kwargs)  # type: ignore[arg-type]

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"No layer {name!r} in this spec; layers: {[layer.name for layer in self.layers]}.")

    # -- factors -------------------------------------------------------------------------------------------------
    def factor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every factor's name and shape, in the spec's fixed order."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            if self.kind == "mlp":
                shapes[f"{layer.name}.weight"] = (layer.d_out, layer.d_in)
                if layer.bias:
                    shapes[f"{layer.name}.bias"] = (layer.d_out,)
            else:
                shapes[f"{layer.name}.A"] = (layer.r, layer.d_in)  # type: ignore[assignment]
                shapes[f"{layer.name}.B"] = (layer.d_out, layer.r)  # type: ignore[assignment]
        return shapes

    @property
    def num_parameters(self) -> int:
        """Length of one instance's flattened weight vector."""
        return sum(math.prod(shape) for shape in self.factor_shapes().values())

    def flatten(self, factors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Concatenate factors (each `(*batch, *factor_shape)`) into weight vectors `(*batch, num_parameters)`.

        The order is the spec's factor order, row-major within a factor: the layout every flat weight vector of this
        spec uses (the diffusion model's samples, its normalisation statistics). `unflatten` is the exact inverse.
        """
        shapes = self.factor_shapes()
        missing, unexpected = sorted(shapes.keys() - factors.keys()), sorted(factors.keys() - shapes.keys())
        if missing or unexpected:
            raise ValueError(
                f"The factors do not match the spec ({self.name}): missing {missing}, unexpected {unexpected}."
            )
        pieces, batch = [], None
        for name, shape in shapes.items():
            value = factors[name]
            lead = tuple(value.shape[: value.dim() - len(shape)])
            if tuple(value.shape[len(lead) :]) != shape or (batch is not None and lead != batch):
                raise ValueError(
                    f"Factor {name!r} has shape {tuple(value.shape)}; expected (*batch, *{shape}) with the same batch "
                    f"dimensions as the other factors{f' {batch}' if batch is not None else ''}."
                )
            batch = lead
            pieces.append(value.reshape(*lead, math.prod(shape)))  # not -1: ambiguous for an empty batch
        return torch.cat(pieces, dim=-1)

    def unflatten(self, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split weight vectors `(*batch, num_parameters)` into factors `(*batch, *factor_shape)` (views)."""
        if vectors.dim() < 1 or vectors.shape[-1] != self.num_parameters:
            raise ValueError(
                f"Weight vectors of the spec {self.name} have {self.num_parameters} entries, got shape "
                f"{tuple(vectors.shape)}: these weights belong to another representation."
            )
        shapes = self.factor_shapes()
        sizes = [math.prod(shape) for shape in shapes.values()]
        lead = vectors.shape[:-1]
        return {
            name: piece.reshape(*lead, *shape)
            for (name, shape), piece in zip(shapes.items(), vectors.split(sizes, dim=-1), strict=True)
        }

    def frozen_entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The asymmetric mask over the flat weight vector: (frozen (P,) bool, values (P,) float32).

        `values` holds each frozen entry's value (0 elsewhere); a symmetric spec freezes nothing.
        """
        frozen = {name: torch.zeros(shape, dtype=torch.bool) for name, shape in self.factor_shapes().items()}
        values = {name: torch.zeros(shape) for name, shape in self.factor_shapes().items()}
        if self.asymmetric:
            for layer in self.layers:
                name = self.masked_factor(layer.name)
                frozen[name] = self.mask(layer.name)
                values[name] = torch.where(frozen[name], self.frozen_values(layer.name), 0.0)
        return self.flatten(frozen), self.flatten(values)

    def masked_factor(self, layer_name: str) -> str:
        """Name of the factor of `layer_name` that carries the asymmetric mask."""
        self.layer(layer_name)
        return f"{layer_name}.weight" if self.kind == "mlp" else f"{layer_name}.A"

    def mask(self, layer_name: str) -> torch.Tensor:
        """Bool mask (True = frozen) over the masked factor of `layer_name`; all False if the spec is symmetric."""
        rows, cols = self.factor_shapes()[self.masked_factor(layer_name)]
        if not self.asymmetric:
            return torch.zeros(rows, cols, dtype=torch.bool)
        return asymmetric_mask(rows, cols, self.mask_ratio, self.mask_seed, layer_name, self.kind == "mlora")

    def frozen_values(self, layer_name: str) -> torch.Tensor:
        """Values of the frozen entries (meaningful where `mask` is True): 0 for mlora, N(0, kappa^2) otherwise."""
        rows, cols = self.factor_shapes()[self.masked_factor(layer_name)]
        return frozen_values(rows, cols, self.kind == "mlora", self.kappa, self.mask_seed, layer_name)

    def masks(self) -> dict[str, torch.Tensor]:
        """The mask of every layer, keyed by masked factor name."""
        return {self.masked_factor(layer.name): self.mask(layer.name) for layer in self.layers}

    # -- comparison ----------------------------------------------------------------------------------------------
    def differences(self, other: RepresentationSpec) -> list[str]:
        """Human-readable differences that make weights of `other` unusable under this spec (empty if none)."""
        found = [
            f"{f.name}: {getattr(self, f.name)!r} != {getattr(other, f.name)!r}"
            for f in fields(self)
            if f.compare and f.name != "layers" and getattr(self, f.name) != getattr(other, f.name)
        ]
        ours = {layer.name: layer for layer in self.layers}
        theirs = {layer.name: layer for layer in other.layers}
        found += [f"layer {name!r} only in the first spec" for name in ours.keys() - theirs.keys()]
        found += [f"layer {name!r} only in the second spec" for name in theirs.keys() - ours.keys()]
        found += [
            f"layer {name!r}: {ours[name]} != {theirs[name]}"
            for name in ours.keys() & theirs.keys()
            if ours[name] != theirs[name]
        ]
        if not found and [layer.name for layer in self.layers] != [layer.name for layer in other.layers]:
            found.append("the layers are listed in a different order")
        return sorted(found)

    def check_matches(
        self,
        other: RepresentationSpec,
        what: str = "these weights",
        against: str = "this spec",
        fix: str = "Decode them with the base field and spec they were made with.",
    ) -> None:
        """Raise a ValueError naming both representations and listing every difference if `other` (the spec of
        `what`) does not describe the same representation as this spec (the one of `against`)."""
        differences = self.differences(other)
        if differences:
            raise ValueError(
                f"{what[:1].upper()}{what[1:]} ({other.name!r} weights) does not match {against} ({self.name!r} "
                f"weights); differences ({against} != {what}): {'; '.join(differences)}. {fix}"
            )

    # -- serialisation -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["layers"] = [asdict(layer) for layer in self.layers]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RepresentationSpec:
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown fields in representation spec: {unknown}. Is hf_wlora older than the spec?")
        data["layers"] = tuple(LayerSpec(**layer) for layer in data.get("layers", ()))
        return cls(**data)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json_string(cls, text: str) -> RepresentationSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"A representation spec must be JSON: {error}") from error
        return cls.from_dict(data)

    def save(self, directory: str | Path) -> Path:
        """Write `representation_spec.json` into `directory` and return its path."""
        path = Path(directory) / SPEC_FILE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json_string())
        return path

    @classmethod
    def load(cls, path: str | Path) -> RepresentationSpec:
        """Read a spec from a JSON file, or from a directory holding `representation_spec.json`."""
        path = Path(path)
        if path.is_dir():
            path = path / SPEC_FILE_NAME
        if not path.is_file():
            raise FileNotFoundError(f"No representation spec at {path}.")
        return cls.from_json_string(path.read_text())
