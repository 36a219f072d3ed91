"""`WeightSpacePipeline`: sample weights with a `WeightSpaceDiT` and decode them with the baked base field.

Components: `transformer` (the `WeightSpaceDiT`), `scheduler` (any diffusers scheduler: DDPM, DDIM, DPM-Solver++,
swapped with `from_config`) and `field` (the baked base `NeuralFieldModel` the weights adapt). A call draws noise in
the normalised weight space, denoises it (with classifier-free guidance for class-conditional models), undoes the
normalisation, and decodes: images for 2-D fields, SDF grids and meshes for 3-D fields.

The pipeline only samples and decodes. What a representation is and does (fitting new data, PEFT conversion) lives
in `hf_wlora.representations`; `encode` and `to_peft_model` are thin calls into it.

Loading from the Hub goes through `huggingface_hub.snapshot_download` (`download` below): stock diffusers treats
components from an outside library as remote code and refuses them, although hf_wlora's classes are imported, not
downloaded. Nothing is ever executed from a downloaded file; tensors are safetensors.
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, SchedulerMixin
from diffusers.utils import BaseOutput, replace_example_docstring
from PIL import Image

from ..checks import check_guidance_interval, check_int, check_number, is_int
from ..fields import NeuralFieldModel, extract_meshes, render_images, render_meshes, sdf_grid, to_pil
from ..metrics import interpolation_weights
from ..models import WeightSpaceDiT
from ..representations import (
    POINTS_PER_SHAPE,
    FitSettings,
    Representation,
    data_targets,
    fit_in_batches,
    peft_model_from_factors,
    representation_from_spec,
)
from ..spec import RepresentationSpec

if TYPE_CHECKING:
    from ..encoding import WeightDataset

    # what decode, interpolate and to_peft_model take: flat vectors, factors keyed by spec name, or rows that carry
    # their spec (a WeightDataset, e.g. `weights.select(range(4))`), whose representation is then checked by name
    Weights = torch.Tensor | Mapping[str, torch.Tensor] | WeightDataset

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("pil", "np", "pt", "mesh", "weights")
# The largest share of signal, sqrt(alpha_bar), the scheduler's first timestep may assume: the loop starts from pure
# noise, so a first step that expects more (diffusers' "leading" spacing at some step counts: 600 steps of 1,000
# start at t = 599) denoises noise as if it were mostly a sample. "trailing" spacing always starts at the last step.
MAX_FIRST_STEP_SIGNAL = 0.1
ClassLabels = int | str | Sequence[int | str] | np.ndarray | torch.Tensor

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> import torch
        >>> from hf_wlora import WeightSpacePipeline

        >>> pipe = WeightSpacePipeline.from_pretrained("outputs/demo/generator/pipeline")  # a folder or a Hub id
        >>> out = pipe(
        ...     num_samples=4,
        ...     class_labels=[0, 1, 2, 3],
        ...     guidance_scale=2.25,
        ...     guidance_interval=(0.5, 1.0),  # guidance in the second half of the steps, as the demo samples
        ...     generator=torch.Generator().manual_seed(0),
        ... )
        >>> out.images[0].save("sample-0.png")
        >>> pipe.to_peft_model(out.weights, 0).save_pretrained("sample-0")  # sample 0 as a PEFT adapter
        ```
"""


@dataclass
class WeightSpacePipelineOutput(BaseOutput):
    """Output of `WeightSpacePipeline` (and of its `interpolate`).

    Args:
        images: 2-D fields: the decoded images, as PIL images ("pil"), a float (N, H, W, 3) array in [0, 1] ("np") or
            tensor ("pt"). 3-D fields with "pil": shaded renderings of the meshes.
        meshes: 3-D fields ("mesh" or "pil"): one `trimesh.Trimesh` per sample, None where no surface came out.
        sdf_grids: 3-D fields: (N, R, R, R) signed distances ("mesh" and "pt": tensor, "np": array).
        weights: The sampled factors keyed by the spec's factor names, (N, *factor_shape) float32 on the CPU.
        class_labels: The class label of each sample (None for an unconditional model).

    `pipe.to_peft_model(output.weights, i)` turns sample i into a PEFT model of the base field.
    """

    images: list[Image.Image] | np.ndarray | torch.Tensor | None = None
    meshes: list[Any] | None = None
    sdf_grids: np.ndarray | torch.Tensor | None = None
    weights: dict[str, torch.Tensor] | None = None
    class_labels: torch.Tensor | None = None


class WeightSpacePipeline(DiffusionPipeline):
    """Generate neural fields by sampling their weights; see the module docstring.

    Args:
        transformer: The `WeightSpaceDiT` over the representation's weights.
        scheduler: A diffusers scheduler (the one the transformer was trained with, or any other from its config).
        field: The baked base field the weights belong to.
        resolution: Default side in pixels of decoded images (2-D fields).
        mesh_resolution: Default SDF grid resolution of decoded shapes (3-D fields).
    """

    model_cpu_offload_seq = "transformer->field"

    def __init__(
        self,
        transformer: WeightSpaceDiT,
        scheduler: SchedulerMixin,
        field: NeuralFieldModel,
        resolution: int = 64,
        mesh_resolution: int = 64,
    ) -> None:
        super().__init__()
        if not field.config.baked:
            raise ValueError("The pipeline decodes with the baked base field: pass `field.bake()`.")
        self.register_modules(transformer=transformer, scheduler=scheduler, field=field)
        self.register_to_config(resolution=resolution, mesh_resolution=mesh_resolution)

    # -- what the pipeline generates --------------------------------------------------------------------------------
    @property
    def spec(self) -> RepresentationSpec:
        """The representation spec of the generated weights (the transformer's)."""
        return self.transformer.spec

    @property
    def modality(self) -> str:
        """ "image" (2-D fields) or "shape" (3-D fields)."""
        return self.field.config.modality

    def check_inputs(
        self,
        num_samples: int,
        num_inference_steps: int,
        guidance_scale: float,
        class_labels: ClassLabels | None,
        latents: torch.Tensor | None,
        output_type: str,
        resolution: int | None,
        mesh_resolution: int | None,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        """Raise a ValueError naming the first bad argument of a call, before any denoising step runs."""
        check_int(num_samples, "num_samples", minimum=1)
        check_int(num_inference_steps, "num_inference_steps", minimum=1)
        self._check_decode_options(output_type, resolution, mesh_resolution)
        check_number(guidance_scale, "guidance_scale")
        check_guidance_interval(guidance_interval)
        if guidance_scale != 1.0 and class_labels is None:
            raise ValueError(
                "Classifier-free guidance (guidance_scale != 1) needs a class-conditional model and class_labels; "
                "pass class_labels or guidance_scale=1."
            )
        if guidance_scale != 1.0 and self.transformer.config.class_dropout_prob == 0:
            raise ValueError(
                "Classifier-free guidance (guidance_scale != 1) extrapolates from the model's unconditional "
                "prediction, and this transformer was trained with class_dropout_prob=0: its 'no class' prediction "
                "was never trained. Sample with guidance_scale=1, or train with class_dropout_prob > 0 (e.g. 0.1)."
            )
        shape = (num_samples, self.transformer.num_parameters)
        if latents is not None and tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}.")

    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        num_samples: int = 1,
        class_labels: ClassLabels | None = None,
        guidance_scale: float = 1.0,
        num_inference_steps: int = 50,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        resolution: int | None = None,
        mesh_resolution: int | None = None,
        eta: float = 0.0,
        return_dict: bool = True,
        guidance_interval: tuple[float, float] = (0.0, 1.0),
    ) -> WeightSpacePipelineOutput | tuple:
        """Sample `num_samples` instances.

        Args:
            num_samples: How many instances to generate (>= 1).
            class_labels: For class-conditional models: one label for all samples or one per sample, as class
                indices or class names (None: unconditional samples).
            guidance_scale: Classifier-free guidance weight w (prediction = uncond + w * (cond - uncond)); 1 turns
                guidance off. Needs a class-conditional model and class_labels.
            num_inference_steps: Denoising steps of the scheduler.
            generator: torch generator(s) for reproducible sampling.
            latents: Starting noise (num_samples, num_parameters) instead of drawing it.
            output_type: "pil", "np" or "pt" (decoded images, or for 3-D fields "pil" renders the meshes and "np"/"pt"
                return the SDF grids), "mesh" (3-D: meshes and SDF grids), or "weights" (no decoding).
            resolution: Image side for 2-D fields (default: the pipeline's `resolution`).
            mesh_resolution: SDF grid resolution for 3-D fields (default: the pipeline's `mesh_resolution`).
            eta: DDIM's eta (ignored by schedulers without it).
            return_dict: Return a `WeightSpacePipelineOutput` (else a tuple of its non-None fields).
            guidance_interval: (start, end), fractions of the denoising loop in which guidance applies: model call
                i of the loop's n = len(scheduler.timesteps) (0 the noisiest) is guided when int(start * n) <= i <
                int(end * n), as diffusers' guiders count `start` and `stop` (for a scheduler of order 2 such as
                Heun's, each bound is rounded down to a whole step, so both calls of a step are guided alike); the
                other calls run the conditional model alone (one forward pass instead of two). (0, 1), the default,
                guides every step. On the demo's glyphs, guiding only the second half, (0.5, 1), gave a 15-25% lower
                FD on learned features at the same copy rate, and guiding only the first half mostly copies
                (benchmarks/RESULTS.md, "Guidance in the second half of the steps"; the idea is Kynkaenniemi et al.,
                2024, who guide a middle interval of noise levels).

        Examples:
        """
        self.check_inputs(
            num_samples,
            num_inference_steps,
            guidance_scale,
            class_labels,
            latents,
            output_type,
            resolution,
            mesh_resolution,
            guidance_interval,
        )
        labels = self._class_labels(class_labels, num_samples)

        device, dtype = self._execution_device, self.transformer.dtype
        if latents is None:
            latents = _randn((num_samples, self.transformer.num_parameters), generator, device, dtype)
        sample = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        labels = None if labels is None else labels.to(device)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        step_kwargs = self._step_kwargs(generator, eta)
        timesteps = self.scheduler.timesteps
        _warn_if_the_first_step_expects_signal(self.scheduler, num_inference_steps)
        order = getattr(self.scheduler, "order", 1)  # model calls per step (Heun: 2); not every scheduler says
        first, end = (_guided_bound(fraction, len(timesteps), order) for fraction in guidance_interval)
        for index, timestep in enumerate(self.progress_bar(timesteps)):
            scale = guidance_scale if first <= index < end else 1.0
            prediction = self._prediction(sample, timestep, labels, scale)
            sample = self.scheduler.step(prediction, timestep, sample, **step_kwargs).prev_sample

        vectors = self.transformer.denormalize(sample.float())
        labels = None if labels is None else labels.cpu()
        output = self.decode(vectors, output_type, resolution, mesh_resolution, class_labels=labels)
        self.maybe_free_model_hooks()
        return output if return_dict else output.to_tuple()

    # -- decoding, and thin calls into the representation ----------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        weights: Weights,
        output_type: str = "pil",
        resolution: int | None = None,
        mesh_resolution: int | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> WeightSpacePipelineOutput:
        """Decode weights on the field: flat vectors (N, num_parameters), factors (N, *shape) keyed by spec name, or
        the rows of a `WeightDataset` (e.g. `weights.select(range(4))`).

        A weight data set carries its spec, so one of another representation (an mlora set through an mlora_asym
        pipeline: same shapes) is refused with both names; plain tensors cannot say what they are, and are taken as
        this pipeline's representation. At least one instance is needed (zero rows: ValueError).
        `class_labels` are only passed through to the output (the labels the weights were sampled with).
        """
        self._check_decode_options(output_type, resolution, mesh_resolution)
        factors = self._as_factors(weights)
        decoded: dict[str, Any] = {}
        if output_type != "weights":
            device = self._execution_device
            function = self._representation().field_function(
                {name: value.to(device) for name, value in factors.items()}
            )
            decoded = self._decode_field(function, output_type, resolution, mesh_resolution, device)
        return WeightSpacePipelineOutput(weights=factors, class_labels=class_labels, **decoded)

    def _decode_field(
        self,
        function: Any,
        output_type: str,
        resolution: int | None,
        mesh_resolution: int | None,
        device: torch.device,
    ) -> dict[str, Any]:
        """Images (2-D), or SDF grids with meshes and their pictures (3-D), of a batched field function."""
        if self.modality == "image":
            images = render_images(function, resolution or self.config.resolution, device=device)
            return {"images": {"pil": to_pil, "np": lambda x: x.numpy(), "pt": lambda x: x}[output_type](images)}
        grids = sdf_grid(function, mesh_resolution or self.config.mesh_resolution, device=device)
        decoded: dict[str, Any] = {"sdf_grids": grids.numpy() if output_type == "np" else grids}
        if output_type in ("mesh", "pil"):
            decoded["meshes"] = extract_meshes(grids, allow_failures=True)  # failures: None, logged with the reason
        if output_type == "pil":
            decoded["images"] = to_pil(render_meshes(decoded["meshes"]))
        return decoded

    @torch.no_grad()
    def interpolate(
        self,
        start: Weights,
        end: Weights,
        num_points: int = 8,
        output_type: str = "pil",
        resolution: int | None = None,
        mesh_resolution: int | None = None,
    ) -> WeightSpacePipelineOutput:
        """Decode `num_points` instances evenly spaced on the straight line from `start` to `end` in weight space.

        `start` and `end` are one instance's weights each: factors keyed by spec name (with or without a leading
        dimension of 1, e.g. `weights.factors(i)` of a weight data set) or a flat vector. The first and last decoded
        instances are `start` and `end` themselves.
        """
        first, last = (self._as_vectors(point) for point in (start, end))
        if first.shape[0] != 1 or last.shape[0] != 1:
            raise ValueError("interpolate takes one instance's weights for start and for end.")
        return self.decode(
            interpolation_weights(first[0], last[0], num_points), output_type, resolution, mesh_resolution
        )

    def to_peft_model(self, weights: Weights, index: int = 0) -> Any:
        """Instance `index` of `weights` (e.g. `output.weights` of a call, or a `WeightDataset`) as a `PeftModel`: a
        copy of the base field carrying that instance's mLoRA adapter, which `save_pretrained` writes as an ordinary
        PEFT adapter folder.

        Weights of another representation are refused by name (a weight data set's spec, or for plain tensors an
        asymmetric mask's frozen entries). The mlp kinds hold whole standalone fields, not adapters, and have no PEFT
        form (a ValueError says so).
        """
        if _is_weight_dataset(weights):
            _check_index(index, len(weights))
            factors, index = self._as_factors(weights.select([index])), 0  # one row, not the whole data set
        else:
            factors = self._as_factors(weights)
            _check_index(index, next(iter(factors.values())).shape[0])
        return peft_model_from_factors(self.spec, self.field, {name: value[index] for name, value in factors.items()})

    def encode(
        self,
        data: Any,
        *,
        steps: int | None = None,
        learning_rate: float | None = None,
        points_per_step: int | None = None,
        points_per_shape: int | None = None,
        batch_size: int = 64,
        initial: Mapping[str, torch.Tensor] | None = None,
        progress: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Encode new instances into this pipeline's weight space; returns factors (N, *shape) keyed by spec name.

        A thin call into `hf_wlora.representations` (`data_targets`, `fit_in_batches`) that repeats the training
        data's encoding (steps, learning rate, point subsets and seeded initial factors from
        `transformer.config.encoding`; arguments override them), so the new weights are comparable with the ones the
        transformer learnt from.

        Args:
            data: 2-D: images in [0, 1] as a (N, H, W, 3) tensor or array, a PIL image or a list of them, or
                instances of an hf_wlora image data source. 3-D: instances of a shape data source (SDF samples drawn
                per instance, seeded by position), or a tuple (points (N, P, 3), sdf (N, P) or (N, P, 1)).
            steps, learning_rate, points_per_step: Fitting budget (default: the training data's).
            points_per_shape: SDF samples per shape when `data` holds shape instances (default: the training data's).
            batch_size: Instances fitted together (changes speed, never results).
            initial: Starting factors of one instance. Required for the mlp kinds, whose weight space starts from a
                fit of the training set's first instance (HyperDiffusion), which a pipeline does not carry.
            progress: Show a progress bar over the batches.
        """
        encoding = dict(self.transformer.config.encoding or {})
        settings = FitSettings.from_encoding(
            encoding, steps=steps, learning_rate=learning_rate, points_per_step=points_per_step
        )
        if self.spec.kind == "mlp" and initial is None:
            raise ValueError(
                f"Encoding into a {self.spec.name} weight space needs `initial`: the factors every instance of the "
                "training set started from (a fit of its first instance, HyperDiffusion's init), which the pipeline "
                "does not store. Pass them, or encode with hf_wlora.encode on the same data source."
            )
        if points_per_shape is None:
            points_per_shape = encoding.get("points_per_shape", POINTS_PER_SHAPE)
        coords, targets = data_targets(data, self.modality, points_per_shape)
        start = None if initial is None else {name: value.float() for name, value in initial.items()}
        representation = self._representation(seed=settings.seed)
        return fit_in_batches(representation, coords, targets, settings, batch_size, start, progress)

    # -- saving and loading -----------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save every component (safetensors), `model_index.json` and a model card (`README.md`)."""
        if kwargs.get("push_to_hub"):
            raise ValueError("Use pipe.push_to_hub(repo_id), which uploads the folder together with its card.")
        self.save_with_card(Path(save_directory), load_path=str(save_directory), **kwargs)

    def save_with_card(self, folder: Path, load_path: str, **kwargs: Any) -> None:
        """`save_pretrained` with a card whose code snippet loads from `load_path` (the folder, or a Hub repo id)."""
        from .card import SAMPLES_PICTURE, write_pipeline_card

        super().save_pretrained(folder, safe_serialization=True, **kwargs)
        # the folder or repo this pipeline was loaded from may show its samples (training writes one): carry the
        # picture along, so that a copy saved elsewhere or pushed to the Hub keeps it and its place in the card
        source_picture = getattr(self, "_loaded_samples_picture", None)
        picture = folder / SAMPLES_PICTURE
        if source_picture is not None and source_picture.is_file() and not picture.exists():
            shutil.copyfile(source_picture, picture)
        write_pipeline_card(folder, self, load_path)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> WeightSpacePipeline:
        """diffusers' `from_pretrained` (a folder, or a Hub repo through `download`), remembering the picture of
        samples the folder or repo holds, which `save_pretrained` and `push_to_hub` then carry along."""
        from .card import SAMPLES_PICTURE

        pipeline = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():  # a Hub id: the snapshot just downloaded, found again in the cache (offline)
            offline = {**kwargs, "local_files_only": True, "force_download": False}
            folder = Path(cls.download(str(pretrained_model_name_or_path), **offline))
        pipeline._loaded_samples_picture = folder / SAMPLES_PICTURE
        return pipeline

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload the pipeline (as `save_pretrained` writes it, card included) to the Hub model repo `repo_id`.

        Keyword arguments: `commit_message`, `private`, `token`, `create_pr` (see `push_pipeline_to_hub`; diffusers'
        own `push_to_hub` would replace the card with a generic one).
        """
        from .hub import push_pipeline_to_hub

        return push_pipeline_to_hub(self, repo_id, **kwargs)

    @classmethod
    def download(cls, pretrained_model_name: str, **kwargs: Any) -> str:
        """Download a pipeline repo with `huggingface_hub.snapshot_download` and return the local folder.

        Stock diffusers refuses components of outside libraries from the Hub as remote code; hf_wlora's components
        are imported from the installed package, so a plain snapshot of the repo's files is all that is needed.
        """
        from huggingface_hub import snapshot_download

        if kwargs.get("trust_remote_code") or kwargs.get("custom_pipeline"):
            raise ValueError("WeightSpacePipeline never runs downloaded code: drop trust_remote_code/custom_pipeline.")
        return snapshot_download(
            pretrained_model_name,
            revision=kwargs.get("revision"),
            cache_dir=kwargs.get("cache_dir"),
            token=kwargs.get("token"),
            force_download=kwargs.get("force_download", False),
            local_files_only=kwargs.get("local_files_only", False),
            allow_patterns=["model_index.json", "README.md", "*/*.json", "*/*.safetensors", "*.png"],
        )

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _representation(self, seed: int = 0) -> Representation:
        """The spec's representation on this pipeline's field (refuses a field of other shapes, naming them)."""
        return representation_from_spec(self.spec, self.field, seed=seed)

    def _check_decode_options(self, output_type: str, resolution: int | None, mesh_resolution: int | None) -> None:
        """Refuse an unknown output type, or a resolution that is not an integer >= 2 (None: the pipeline's)."""
        for name, value in (("resolution", resolution), ("mesh_resolution", mesh_resolution)):
            if value is not None:
                check_int(value, name, minimum=2)
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        if output_type == "mesh" and self.modality == "image":
            raise ValueError(
                "output_type='mesh' is for 3-D fields; this pipeline makes images (use 'pil', 'np', 'pt')."
            )

    def _as_vectors(self, weights: Weights) -> torch.Tensor:
        """Flat (N, num_parameters) float32 vectors from flat vectors, factors or weight data set rows, checked
        against the spec (a weight data set's own spec by name)."""
        if _is_weight_dataset(weights):
            weights.check_compatible(self)
            weights = weights.stacked_factors()
        if isinstance(weights, Mapping):
            shapes = self.spec.factor_shapes()
            single = all(tuple(value.shape) == shapes.get(name) for name, value in weights.items())
            vectors = self.spec.flatten({name: value.detach().float().cpu() for name, value in weights.items()})
            vectors = vectors.unsqueeze(0) if single else vectors
        else:
            vectors = torch.as_tensor(weights).detach().float().cpu()
            vectors = vectors.unsqueeze(0) if vectors.dim() == 1 else vectors
        if vectors.dim() != 2 or vectors.shape[1] != self.transformer.num_parameters:
            raise ValueError(
                f"These weights do not follow the pipeline's spec ({self.spec.name}, {self.transformer.num_parameters} "
                f"parameters per instance): got shape {tuple(vectors.shape)}."
            )
        if not vectors.shape[0]:
            raise ValueError(f"These weights hold no instance: got shape {tuple(vectors.shape)}; pass at least one.")
        if not torch.isfinite(vectors).all():
            raise ValueError("The weights contain NaN or infinite values.")
        return vectors

    def _as_factors(self, weights: Weights) -> dict[str, torch.Tensor]:
        """Factors (N, *shape) float32 on the CPU, keyed by spec name, from what `_as_vectors` takes (checked)."""
        return {name: value.float().cpu() for name, value in self.spec.unflatten(self._as_vectors(weights)).items()}

    def _class_labels(self, class_labels: ClassLabels | None, num_samples: int) -> torch.Tensor | None:
        """Class indices (num_samples,) from indices or names; None for unconditional sampling."""
        num_classes = self.transformer.config.num_classes
        if class_labels is None:
            return None
        if not num_classes:
            raise ValueError("This pipeline's transformer is unconditional: pass class_labels=None.")
        names = list(self.transformer.config.class_names or [])
        # numpy and torch labels as Python values: integer arrays work like lists, float ones are refused below
        array_like = isinstance(class_labels, (torch.Tensor, np.ndarray, np.generic))
        values = class_labels.tolist() if array_like else class_labels
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):  # one label for every sample
            values = [values] * num_samples
        values = list(values)
        if len(values) != num_samples:
            raise ValueError(f"Got {len(values)} class labels for {num_samples} samples: pass one, or one per sample.")
        indices = []
        for value in values:
            if isinstance(value, str):
                if value not in names:
                    raise ValueError(
                        f"Unknown class name {value!r}; the classes are {names or list(range(num_classes))}."
                    )
                value = names.index(value)
            if not is_int(value):  # a float such as 1.0 is refused rather than rounded: 1.5 has no class
                classes = f"or the class names {names}" if names else "(this model has no class names)"
                raise ValueError(
                    f"Class label {value!r} is not a class index or name: class_labels takes integers "
                    f"0..{num_classes - 1} {classes}, one for all samples or one per sample (a list, an integer "
                    f"numpy array or tensor), got a {type(value).__name__}."
                )
            if not 0 <= value < num_classes:
                raise ValueError(f"Class label {value!r} is out of range: use 0..{num_classes - 1} (or a class name).")
            indices.append(value)
        return torch.tensor(indices, dtype=torch.int64)

    def _prediction(
        self, sample: torch.Tensor, timestep: torch.Tensor, labels: torch.Tensor | None, guidance_scale: float
    ) -> torch.Tensor:
        """The transformer's prediction for `sample` at `timestep`: conditional on `labels` (None: unconditional),
        extrapolated from the unconditional one, uncond + w * (cond - uncond), when `guidance_scale` w is not 1."""
        guided = guidance_scale != 1.0
        model_input = torch.cat([sample, sample]) if guided else sample
        model_input = self.scheduler.scale_model_input(model_input, timestep)
        if guided:
            labels = torch.cat([torch.full_like(labels, self.transformer.null_class_label), labels])
        prediction = self.transformer(model_input, timestep, labels).sample
        if not guided:
            return prediction
        unconditional, conditional = prediction.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    def _step_kwargs(self, generator: torch.Generator | list[torch.Generator] | None, eta: float) -> dict[str, Any]:
        """The optional arguments this scheduler's `step` accepts (generator for stochastic samplers, DDIM's eta)."""
        accepted = inspect.signature(self.scheduler.step).parameters
        kwargs: dict[str, Any] = {}
        if "generator" in accepted:
            kwargs["generator"] = generator
        if "eta" in accepted:
            kwargs["eta"] = eta
        return kwargs


def _guided_bound(fraction: float, calls: int, order: int) -> int:
    """The index of the model call where a guidance interval's bound `fraction` falls in a loop of `calls` calls, at
    the start of a whole step of a scheduler of `order` calls per step (Heun's: two)."""
    return calls if fraction >= 1 else int(fraction * calls) // order * order


def _warn_if_the_first_step_expects_signal(scheduler: SchedulerMixin, num_inference_steps: int) -> None:
    """Log a warning when the scheduler's first timestep assumes more than `MAX_FIRST_STEP_SIGNAL` of signal."""
    sigmas = getattr(scheduler, "sigmas", None)  # sigma-parametrised (Heun, Euler, DPM-Solver): sigma^2 = (1 - a) / a
    alphas_cumprod = getattr(scheduler, "alphas_cumprod", None)  # DDPM, DDIM: indexed by integer timesteps
    if sigmas is not None and len(sigmas):
        signal = float(1.0 / (1.0 + float(sigmas[0]) ** 2) ** 0.5)
    elif (
        alphas_cumprod is not None
        and len(scheduler.timesteps)
        and 0 <= int(scheduler.timesteps[0]) < len(alphas_cumprod)
    ):
        signal = float(alphas_cumprod[int(scheduler.timesteps[0])]) ** 0.5
    else:  # a scheduler that says neither (flow matching...): nothing to check
        return
    if signal > MAX_FIRST_STEP_SIGNAL:
        first = f"{float(scheduler.timesteps[0]):g}" if len(scheduler.timesteps) else "?"
        spacing = scheduler.config.get("timestep_spacing", "?")
        logger.warning(
            "The scheduler's first of %d steps is at timestep %s of %s (timestep_spacing=%r), where a sample is still "
            "%.0f%% signal, but sampling starts from pure noise: the samples will be off. Use trailing spacing: "
            "pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, timestep_spacing='trailing').",
            num_inference_steps,
            first,
            scheduler.config.get("num_train_timesteps", "?"),
            spacing,
            100 * signal,
        )


def _is_weight_dataset(weights: Any) -> bool:
    """Whether `weights` are a `WeightDataset`'s rows (imported only then: `datasets` is slow to import)."""
    if isinstance(weights, (torch.Tensor, Mapping)):
        return False
    from ..encoding import WeightDataset

    return isinstance(weights, WeightDataset)


def _check_index(index: Any, count: int) -> None:
    """Raise an IndexError unless `index` is an integer position among `count` samples (negative from the end)."""
    if not is_int(index) or not -count <= index < count:
        raise IndexError(f"Sample index {index!r} is out of range for {count} samples.")


def _randn(
    shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator] | None, device: torch.device, dtype: Any
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (so a CPU generator gives the same samples anywhere)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(shape, generator=generator, device=device, dtype=dtype)


__all__ = ["WeightSpacePipeline", "WeightSpacePipelineOutput"]
