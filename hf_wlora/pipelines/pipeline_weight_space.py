"""`WeightSpacePipeline`: sample weights with a `WeightSpaceDiT` and decode them with the baked base field.

Components: `transformer` (the `WeightSpaceDiT`), `scheduler` (any diffusers scheduler: DDPM, DDIM, DPM-Solver++,
swapped with `from_config`) and `field` (the baked base `NeuralFieldModel` the weights adapt). A call draws noise in
the normalised weight space, denoises it (with classifier-free guidance for class-conditional models), undoes the
normalisation, and decodes: images for 2-D fields, SDF grids and meshes for 3-D fields.

Loading from the Hub goes through `huggingface_hub.snapshot_download` (`download` below): stock diffusers treats
components from an outside library as remote code and refuses them, although hf_wlora's classes are imported, not
downloaded. Nothing is ever executed from a downloaded file; tensors are safetensors.
"""

from __future__ import annotations

import copy
import inspect
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, SchedulerMixin
from diffusers.utils import BaseOutput
from PIL import Image

from ..encoding.representations import Representation, representation_from_spec
from ..fields import NeuralFieldModel
from ..models import WeightSpaceDiT
from ..spec import RepresentationSpec

OUTPUT_TYPES = ("pil", "np", "pt", "mesh", "weights")
ClassLabels = int | str | Sequence[int | str] | torch.Tensor


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

    `adapter(i)` returns sample i as a PEFT model (the base field with sample i's adapter), which
    `save_pretrained` writes as an ordinary PEFT adapter folder.
    """

    images: list[Image.Image] | np.ndarray | torch.Tensor | None = None
    meshes: list[Any] | None = None
    sdf_grids: np.ndarray | torch.Tensor | None = None
    weights: dict[str, torch.Tensor] | None = None
    class_labels: torch.Tensor | None = None

    def adapter(self, index: int) -> Any:
        """Sample `index` as a `PeftModel`: a copy of the base field carrying that sample's mLoRA adapter."""
        from peft import get_peft_model

        from ..encoding.adapters import mlora_config_from_spec
        from ..tuners.mlora import adapter_factors

        spec, field = self._spec, self._field  # set by the pipeline that made this output
        count = next(iter(self.weights.values())).shape[0]
        if not -count <= index < count:
            raise IndexError(f"Sample index {index} is out of range for {count} samples.")
        model = get_peft_model(copy.deepcopy(field), mlora_config_from_spec(spec)).eval()
        with torch.no_grad():
            for name, parameter in adapter_factors(model).items():
                parameter.copy_(self.weights[name][index])
        return model


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

    @torch.no_grad()
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
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}.")
        self._check_output_type(output_type)
        labels = self._class_labels(class_labels, num_samples)
        guided = guidance_scale != 1.0
        if guided and labels is None:
            raise ValueError(
                "Classifier-free guidance (guidance_scale != 1) needs a class-conditional model and class_labels; "
                "pass class_labels or guidance_scale=1."
            )

        device, dtype = self._execution_device, self.transformer.dtype
        shape = (num_samples, self.transformer.num_parameters)
        if latents is None:
            latents = _randn(shape, generator, device, dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}.")
        sample = latents.to(device=device, dtype=dtype) * self.scheduler.init_noise_sigma
        if labels is not None:
            labels = labels.to(device)
            null = torch.full_like(labels, self.transformer.null_class_label)
            model_labels = torch.cat([null, labels]) if guided else labels
        else:
            model_labels = None

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        step_kwargs = self._step_kwargs(generator, eta)
        for timestep in self.progress_bar(self.scheduler.timesteps):
            model_input = torch.cat([sample, sample]) if guided else sample
            model_input = self.scheduler.scale_model_input(model_input, timestep)
            prediction = self.transformer(model_input, timestep, model_labels).sample
            if guided:
                unconditional, conditional = prediction.chunk(2)
                prediction = unconditional + guidance_scale * (conditional - unconditional)
            sample = self.scheduler.step(prediction, timestep, sample, **step_kwargs).prev_sample

        vectors = self.transformer.denormalize(sample.float())
        labels = None if labels is None else labels.cpu()
        output = self.decode(vectors, output_type, resolution, mesh_resolution, class_labels=labels)
        self.maybe_free_model_hooks()
        return output if return_dict else output.to_tuple()

    # -- decoding, interpolation, encoding --------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        weights: torch.Tensor | Mapping[str, torch.Tensor],
        output_type: str = "pil",
        resolution: int | None = None,
        mesh_resolution: int | None = None,
        class_labels: torch.Tensor | None = None,
    ) -> WeightSpacePipelineOutput:
        """Decode weights on the field: flat vectors (N, num_parameters), or factors (N, *shape) keyed by spec name.

        `class_labels` are only passed through to the output (the labels the weights were sampled with).
        """
        self._check_output_type(output_type)
        vectors = self._as_vectors(weights)
        factors = {name: value.float().cpu() for name, value in self.spec.unflatten(vectors).items()}
        decoded: dict[str, Any] = {}
        if output_type != "weights":
            device = self._execution_device
            function = self._representation().field_function(
                {name: value.to(device) for name, value in factors.items()}
            )
            decoded = self._decode_field(function, output_type, resolution, mesh_resolution, device)
        output = WeightSpacePipelineOutput(weights=factors, class_labels=class_labels, **decoded)
        output._spec, output._field = self.spec, self.field  # for output.adapter(i)
        return output

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
            from ..fields import render_images, to_pil

            images = render_images(function, resolution or self.config.resolution, device=device)
            return {"images": {"pil": to_pil, "np": lambda x: x.numpy(), "pt": lambda x: x}[output_type](images)}
        from ..fields import extract_meshes, sdf_grid

        grids = sdf_grid(function, mesh_resolution or self.config.mesh_resolution, device=device)
        decoded: dict[str, Any] = {"sdf_grids": grids.numpy() if output_type == "np" else grids}
        if output_type in ("mesh", "pil"):
            decoded["meshes"] = extract_meshes(grids, allow_failures=True)  # failures: None, logged with the reason
        if output_type == "pil":
            from ..fields import to_pil
            from ..fields.mesh_rendering import render_meshes

            decoded["images"] = to_pil(render_meshes(decoded["meshes"]))
        return decoded

    @torch.no_grad()
    def interpolate(
        self,
        start: torch.Tensor | Mapping[str, torch.Tensor],
        end: torch.Tensor | Mapping[str, torch.Tensor],
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
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
            raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}.")
        first, last = (self._as_vectors(point) for point in (start, end))
        if first.shape[0] != 1 or last.shape[0] != 1:
            raise ValueError("interpolate takes one instance's weights for start and for end.")
        alphas = torch.linspace(0.0, 1.0, num_points, dtype=torch.float64)[:, None]
        vectors = ((1 - alphas) * first.double() + alphas * last.double()).float()
        return self.decode(vectors, output_type, resolution, mesh_resolution)

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

        The fit repeats the training data's encoding (steps, learning rate, point subsets and seeded initial factors
        from `transformer.config.encoding`; arguments override them), so the new weights are comparable with the
        ones the transformer learnt from.

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
        from tqdm.auto import tqdm

        from ..encoding.fitting import FitSettings, fit_instances

        settings = dict(self.transformer.config.encoding or {})
        fit = FitSettings(
            steps=settings.get("steps", 300) if steps is None else steps,
            learning_rate=settings.get("learning_rate", 1e-2) if learning_rate is None else learning_rate,
            points_per_step=settings.get("points_per_step") if points_per_step is None else points_per_step,
            seed=settings.get("seed", 0),
        )
        if self.spec.kind == "mlp" and initial is None:
            raise ValueError(
                f"Encoding into a {self.spec.name} weight space needs `initial`: the factors every instance of the "
                "training set started from (a fit of its first instance, HyperDiffusion's init), which the pipeline "
                "does not store. Pass them, or encode with hf_wlora.encode on the same data source."
            )
        if points_per_shape is None:
            points_per_shape = settings.get("points_per_shape", 8192)
        coords, targets = self._encoding_targets(data, points_per_shape)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        representation = self._representation(seed=fit.seed)
        start = None if initial is None else {name: value.float() for name, value in initial.items()}
        pieces: list[dict[str, torch.Tensor]] = []
        batches = range(0, targets.shape[0], batch_size)
        for first in tqdm(batches, desc=f"encoding {self.spec.name}", disable=not progress):
            batch = slice(first, first + batch_size)
            batch_coords = coords if coords.dim() == 2 else coords[batch]
            pieces.append(fit_instances(representation, batch_coords, targets[batch], fit, initial=start).factors)
        return {name: torch.cat([piece[name] for piece in pieces]) for name in pieces[0]}

    # -- saving and loading -----------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Save every component (safetensors), `model_index.json` and a model card (`README.md`)."""
        if kwargs.get("push_to_hub"):
            raise ValueError("Use pipe.push_to_hub(repo_id), which uploads the folder together with its card.")
        self._save(Path(save_directory), load_path=str(save_directory), **kwargs)

    def _save(self, folder: Path, load_path: str, **kwargs: Any) -> None:
        from .card import write_pipeline_card

        super().save_pretrained(folder, safe_serialization=True, **kwargs)
        write_pipeline_card(folder, self, load_path)

    def push_to_hub(
        self,
        repo_id: str,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """Upload the pipeline (as `save_pretrained` writes it, card included) to the Hub model repo `repo_id`."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as folder:
            self._save(Path(folder), load_path=repo_id)  # the card's snippet loads from the repo
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                commit_message=commit_message or "Upload WeightSpacePipeline with hf_wlora",
                create_pr=create_pr,
            )

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

    def _check_output_type(self, output_type: str) -> None:
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        if output_type == "mesh" and self.modality == "image":
            raise ValueError(
                "output_type='mesh' is for 3-D fields; this pipeline makes images (use 'pil', 'np', 'pt')."
            )

    def _as_vectors(self, weights: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Flat (N, num_parameters) float32 vectors from flat vectors or factors, checked against the spec."""
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
        if not torch.isfinite(vectors).all():
            raise ValueError("The weights contain NaN or infinite values.")
        return vectors

    def _class_labels(self, class_labels: ClassLabels | None, num_samples: int) -> torch.Tensor | None:
        """Class indices (num_samples,) from indices or names; None for unconditional sampling."""
        num_classes = self.transformer.config.num_classes
        if class_labels is None:
            return None
        if not num_classes:
            raise ValueError("This pipeline's transformer is unconditional: pass class_labels=None.")
        names = list(self.transformer.config.class_names or [])
        values = class_labels.tolist() if isinstance(class_labels, torch.Tensor) else class_labels
        if isinstance(values, (int, str)):
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
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_classes:
                raise ValueError(f"Class label {value!r} is out of range: use 0..{num_classes - 1} (or a class name).")
            indices.append(value)
        return torch.tensor(indices, dtype=torch.int64)

    def _step_kwargs(self, generator: torch.Generator | list[torch.Generator] | None, eta: float) -> dict[str, Any]:
        """The optional arguments this scheduler's `step` accepts (generator for stochastic samplers, DDIM's eta)."""
        accepted = inspect.signature(self.scheduler.step).parameters
        kwargs: dict[str, Any] = {}
        if "generator" in accepted:
            kwargs["generator"] = generator
        if "eta" in accepted:
            kwargs["eta"] = eta
        return kwargs

    def _encoding_targets(self, data: Any, points_per_shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(coords, targets) to fit: shared pixel centres (P, 2) and colours, or per-shape SDF samples."""
        from ..encoding.encoder import instance_targets

        if self.modality == "image":
            images = _images_tensor(data)
            from ..fields import image_coordinates

            return image_coordinates(images.shape[1], images.shape[2]), images.reshape(images.shape[0], -1, 3)
        if isinstance(data, tuple) and len(data) == 2:
            points, sdf = (torch.as_tensor(value, dtype=torch.float32) for value in data)
            sdf = sdf.unsqueeze(-1) if sdf.dim() == 2 else sdf
            if points.dim() != 3 or points.shape[-1] != 3 or sdf.shape != (*points.shape[:2], 1):
                raise ValueError(
                    f"Shape data as a tuple must be (points (N, P, 3), sdf (N, P)), got {tuple(points.shape)} and "
                    f"{tuple(sdf.shape)}."
                )
            return points, sdf
        instances = list(data)
        if not instances or not all(callable(getattr(item, "sample", None)) for item in instances):
            raise ValueError(
                "3-D data must be shape instances (e.g. from hf_wlora.load_mesh_folder) or (points, sdf) samples."
            )
        return instance_targets(instances, "shape", points_per_shape, list(range(len(instances))))


def _randn(
    shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator] | None, device: torch.device, dtype: Any
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (so a CPU generator gives the same samples anywhere)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(shape, generator=generator, device=device, dtype=dtype)


def _images_tensor(data: Any) -> torch.Tensor:
    """(N, H, W, 3) float32 images in [0, 1] from a tensor/array, PIL image(s) or image instances."""
    if isinstance(data, Image.Image):
        data = [data]
    if isinstance(data, (list, tuple)) and data and isinstance(data[0], Image.Image):
        arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in data]
        if len({array.shape for array in arrays}) > 1:
            raise ValueError("Images to encode must share one size; resize them first.")
        data = np.stack(arrays)
    elif isinstance(data, (list, tuple)) and data and hasattr(data[0], "image"):
        data = np.stack([np.asarray(instance.image, dtype=np.float32) for instance in data])
    images = torch.as_tensor(np.asarray(data) if not isinstance(data, torch.Tensor) else data, dtype=torch.float32)
    images = images.unsqueeze(0) if images.dim() == 3 else images
    if images.dim() != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"Images to encode must be (N, H, W, 3) RGB in [0, 1], got shape {tuple(images.shape)}.")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("Images to encode must hold finite values in [0, 1] (divide uint8 images by 255).")
    return images


__all__ = ["WeightSpacePipeline", "WeightSpacePipelineOutput"]
