"""WeightSpacePipeline: sampling (determinism, every scheduler, guidance), decoding, adapters, interpolation, encoding,
saving and loading (local and Hub), and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, HeunDiscreteScheduler
from huggingface_hub import HfApi, ModelCard
from peft import PeftModel
from PIL import Image
from safetensors.torch import load_file, save_file
from stage3_helpers import CLASSES, RESOLUTION, make_field, make_pipeline

from hf_wlora.data import GlyphImages, ProceduralShapes, sample_sdf
from hf_wlora.encoding import make_representation
from hf_wlora.fields import image_coordinates, render_images
from hf_wlora.models import WeightSpaceDiT
from hf_wlora.pipelines import WeightSpacePipeline
from hf_wlora.representations import FitSettings, fit_instances, peft_model_to_row


def sample_weights(pipe: WeightSpacePipeline, seed: int = 0, **kwargs) -> torch.Tensor:
    out = pipe(3, num_inference_steps=6, generator=torch.Generator().manual_seed(seed), output_type="weights", **kwargs)
    return pipe.spec.flatten(out.weights)


def test_sampling_is_deterministic_for_a_fixed_generator() -> None:
    pipe = make_pipeline()
    first, again, other = sample_weights(pipe, 0), sample_weights(pipe, 0), sample_weights(pipe, 1)
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert torch.isfinite(first).all()
    frozen, values = pipe.spec.frozen_entries()
    assert torch.equal(first[:, frozen], values[frozen].expand(3, -1))  # generated weights respect the mask


class OracleDiT(WeightSpaceDiT):
    """A perfect denoiser for a data set of one point per class: predicts exactly what leads to `targets[label]`."""

    def use_oracle(self, targets: torch.Tensor, scheduler: DDPMScheduler) -> None:
        self.targets = targets  # (num_classes + 1, P) normalised; the last row is the "no class" target
        self.alphas_cumprod = scheduler.alphas_cumprod
        self.prediction_type = scheduler.config.prediction_type

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        labels = torch.full((sample.shape[0],), self.targets.shape[0] - 1) if class_labels is None else class_labels
        clean = self.targets[labels]
        if self.prediction_type == "sample":
            prediction = clean
        else:
            alpha = self.alphas_cumprod[torch.as_tensor(timestep).long()].expand(sample.shape[0])[:, None]
            prediction = (sample - alpha.sqrt() * clean) / (1 - alpha).sqrt()
        return type("Output", (), {"sample": prediction})()


def oracle_pipeline(prediction_type: str) -> tuple[WeightSpacePipeline, torch.Tensor]:
    pipe = make_pipeline(prediction_type=prediction_type)
    oracle = OracleDiT(**{key: value for key, value in pipe.transformer.config.items() if not key.startswith("_")})
    oracle.load_state_dict(pipe.transformer.state_dict())
    targets = torch.randn(3, oracle.num_parameters, generator=torch.Generator().manual_seed(5))
    oracle.use_oracle(targets, pipe.scheduler)
    pipe.transformer = oracle
    return pipe, targets


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
@pytest.mark.parametrize(
    ("scheduler_class", "steps"), [(DDPMScheduler, 20), (DDIMScheduler, 10), (DPMSolverMultistepScheduler, 8)]
)
def test_every_scheduler_lands_on_the_target_of_a_perfect_denoiser(prediction_type, scheduler_class, steps) -> None:
    pipe, targets = oracle_pipeline(prediction_type)
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)  # the swap users make
    out = pipe(2, class_labels=[1, "ring"], num_inference_steps=steps, generator=torch.Generator().manual_seed(0))
    expected = pipe.transformer.denormalize(targets[[1, 0]])
    torch.testing.assert_close(pipe.spec.flatten(out.weights), expected, atol=2e-3, rtol=1e-3)
    assert out.class_labels.tolist() == [1, 0]


def test_classifier_free_guidance_extrapolates_from_the_unconditional_prediction() -> None:
    pipe, targets = oracle_pipeline("epsilon")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    guided = pipe(1, class_labels="bar", guidance_scale=3.0, num_inference_steps=10, output_type="weights")
    # both predictions are exact, so the guided sampler denoises towards uncond + w * (cond - uncond)
    expected = pipe.transformer.denormalize(targets[2] + 3.0 * (targets[1] - targets[2]))
    torch.testing.assert_close(pipe.spec.flatten(guided.weights)[0], expected, atol=5e-3, rtol=1e-3)
    unconditional = pipe(1, num_inference_steps=10, output_type="weights")
    torch.testing.assert_close(pipe.spec.flatten(unconditional.weights)[0], pipe.transformer.denormalize(targets[2]))


@pytest.mark.parametrize(
    ("interval", "guided_at_the_end"), [((0.0, 0.5), False), ((0.5, 1.0), True), ((0.3, 0.3), False)]
)
def test_guidance_applies_only_within_its_interval(interval, guided_at_the_end) -> None:
    pipe, targets = oracle_pipeline("sample")
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    batch_sizes = []
    pipe.transformer.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))
    out = pipe(2, class_labels="bar", guidance_scale=3.0, num_inference_steps=10, guidance_interval=interval)
    # step i of 10 is guided (both halves of a doubled batch) when int(10 * start) <= i < int(10 * end)
    first, end = int(10 * interval[0]), int(10 * interval[1])
    assert batch_sizes == [4 if first <= step < end else 2 for step in range(10)]
    # an x0-predicting sampler ends on its last prediction: guided there, or the conditional target alone
    last = targets[2] + 3.0 * (targets[1] - targets[2]) if guided_at_the_end else targets[1]
    expected = pipe.transformer.denormalize(last).expand(2, -1)
    torch.testing.assert_close(pipe.spec.flatten(out.weights), expected, atol=5e-3, rtol=1e-3)


def test_a_guidance_interval_never_splits_a_heun_step() -> None:
    pipe = make_pipeline()
    pipe.scheduler = HeunDiscreteScheduler.from_config(pipe.scheduler.config)  # two model calls per step
    batch_sizes = []
    pipe.transformer.register_forward_pre_hook(lambda module, args: batch_sizes.append(args[0].shape[0]))
    pipe(1, class_labels=0, guidance_scale=2.0, num_inference_steps=5, guidance_interval=(0.5, 1.0))
    # 9 calls: steps (0, 1), (2, 3), (4, 5), (6, 7) and the last one alone; int(0.5 * 9) = 4 starts a step
    assert batch_sizes == [1, 1, 1, 1, 2, 2, 2, 2, 2]
    batch_sizes.clear()
    pipe(1, class_labels=0, guidance_scale=2.0, num_inference_steps=5, guidance_interval=(0.6, 1.0))
    assert batch_sizes == [1, 1, 1, 1, 2, 2, 2, 2, 2]  # int(0.6 * 9) = 5, the second call of a step: rounded down


def test_a_first_step_that_expects_a_partly_clean_sample_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    """Sampling starts from pure noise: diffusers' "leading" spacing starts 60 steps of 100 at t = 59, where a
    sample is mostly signal, and would denoise the noise as if it were one. Trained pipelines use "trailing"."""
    leading = make_pipeline(timestep_spacing="leading")
    leading(1, num_inference_steps=60, output_type="weights")
    assert leading.scheduler.timesteps[0] == 59
    assert "first of 60 steps is at timestep 59 of 100 (timestep_spacing='leading')" in caplog.text
    caplog.clear()
    leading(1, num_inference_steps=50, output_type="weights")  # starts at 98: as good as pure noise
    trailing = make_pipeline()
    for steps in (2, 60):
        trailing(1, num_inference_steps=steps, output_type="weights")
        assert trailing.scheduler.timesteps[0] == 99
    assert "first of" not in caplog.text


def test_the_full_guidance_interval_is_plain_guidance() -> None:
    pipe = make_pipeline()
    plain = sample_weights(pipe, 0, class_labels=[0, 1, 1], guidance_scale=2.0)
    full = sample_weights(pipe, 0, class_labels=[0, 1, 1], guidance_scale=2.0, guidance_interval=(0.0, 1.0))
    none = sample_weights(pipe, 0, class_labels=[0, 1, 1], guidance_scale=2.0, guidance_interval=(1.0, 1.0))
    unguided = sample_weights(pipe, 0, class_labels=[0, 1, 1])
    assert torch.equal(plain, full) and torch.equal(none, unguided) and not torch.allclose(plain, unguided)


def test_outputs_of_a_2d_pipeline() -> None:
    pipe = make_pipeline()
    generator = torch.Generator().manual_seed(0)
    pil = pipe(2, num_inference_steps=3, generator=generator).images
    assert len(pil) == 2 and isinstance(pil[0], Image.Image) and pil[0].size == (RESOLUTION, RESOLUTION)
    array = pipe(2, num_inference_steps=3, output_type="np", resolution=5).images
    assert isinstance(array, np.ndarray) and array.shape == (2, 5, 5, 3) and 0 <= array.min() <= array.max() <= 1
    tensor = pipe(2, num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0))
    assert torch.equal((tensor.images * 255).round().to(torch.uint8), torch.as_tensor(np.stack(pil)))
    only_weights = pipe(2, num_inference_steps=3, output_type="weights")
    assert only_weights.images is None and set(only_weights.weights) == set(pipe.spec.factor_shapes())
    images, weights, labels = pipe(2, num_inference_steps=3, class_labels=0, return_dict=False)
    assert len(images) == 2 and labels.tolist() == [0, 0] and isinstance(weights, dict)


def test_outputs_of_a_3d_pipeline_include_failed_meshes() -> None:
    pipe = make_pipeline(modality="shape")
    with torch.no_grad():  # a field that is positive everywhere: no surface, so every mesh fails, named and logged
        pipe.field.head.linear.weight.zero_()
        pipe.field.head.linear.bias.fill_(0.5)
    out = pipe(2, num_inference_steps=3, output_type="mesh")
    assert out.meshes == [None, None] and set(out.meshes.failures) == {0, 1}
    assert out.sdf_grids.shape == (2, 12, 12, 12) and torch.allclose(out.sdf_grids, torch.tensor(0.5))
    assert isinstance(pipe(1, num_inference_steps=2, output_type="np").sdf_grids, np.ndarray)
    pictures = pipe(1, num_inference_steps=2, output_type="pil")
    assert len(pictures.images) == 1 and pictures.meshes == [None]


def test_a_sample_is_a_peft_adapter(tmp_path: Path) -> None:
    pipe = make_pipeline()
    out = pipe(2, num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0))
    model = pipe.to_peft_model(out.weights, 1)
    assert isinstance(model, PeftModel)
    rendered = render_images(lambda coords: model(coords).values, RESOLUTION)
    torch.testing.assert_close(rendered[0], out.images[1], atol=1e-6, rtol=0)
    model.save_pretrained(tmp_path / "sample-1")
    reloaded = PeftModel.from_pretrained(make_field(), tmp_path / "sample-1")
    torch.testing.assert_close(render_images(lambda coords: reloaded(coords).values, RESOLUTION)[0], out.images[1])
    with pytest.raises(IndexError, match="out of range for 2 samples"):
        pipe.to_peft_model(out.weights, 2)
    flat = pipe.spec.flatten(out.weights)  # flat vectors name the same instance
    row = peft_model_to_row(pipe.to_peft_model(flat, -1))
    assert all(torch.equal(row[name], value[1]) for name, value in out.weights.items())


def test_interpolation_starts_and_ends_at_the_given_weights() -> None:
    pipe = make_pipeline()
    ends = pipe(2, num_inference_steps=3, output_type="pt", generator=torch.Generator().manual_seed(0))
    start = {name: value[0] for name, value in ends.weights.items()}  # one instance, spec shapes
    end = {name: value[1:2] for name, value in ends.weights.items()}  # or with a leading 1
    path = pipe.interpolate(start, end, num_points=5, output_type="pt")
    vectors = pipe.spec.flatten(path.weights)
    flat_ends = pipe.spec.flatten(ends.weights)
    assert torch.equal(vectors[0], flat_ends[0]) and torch.equal(vectors[-1], flat_ends[1])
    torch.testing.assert_close(vectors[2], (flat_ends[0] + flat_ends[1]) / 2)
    torch.testing.assert_close(path.images[[0, -1]], ends.images)
    with pytest.raises(ValueError, match="num_points must be an integer >= 2"):
        pipe.interpolate(start, end, num_points=1)


def test_encoding_new_images_repeats_the_training_encoding() -> None:
    pipe = make_pipeline()
    glyphs = GlyphImages(num_instances=3, resolution=RESOLUTION, seed=0)
    instances = [glyphs[index] for index in range(3)]
    factors = pipe.encode(instances, batch_size=2, progress=False)
    # the same fit, done directly with the training data's settings (steps 15, lr 0.01, seed 0)
    representation = make_representation("mlora_asym", pipe.field, rank=2, seed=0)
    targets = torch.stack([torch.as_tensor(instance.image).reshape(-1, 3) for instance in instances])
    expected = fit_instances(
        representation, image_coordinates(RESOLUTION, RESOLUTION), targets, FitSettings(15, 0.01, None, 0)
    )
    for name, value in expected.factors.items():
        torch.testing.assert_close(factors[name], value, atol=1e-6, rtol=1e-6)
    # the same images as an array give the same weights; 8-bit PIL images are accepted too
    as_array = pipe.encode(targets.reshape(3, RESOLUTION, RESOLUTION, 3).numpy(), progress=False)
    assert all(torch.equal(as_array[name], factors[name]) for name in factors)
    pictures = [Image.fromarray((instance.image * 255).round().astype(np.uint8)) for instance in instances[:1]]
    assert pipe.encode(pictures, steps=3, progress=False)["trunk.0.linear.A"].shape == (1, 2, 16)
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\] \(divide uint8 images by 255\)"):
        pipe.encode(torch.full((1, 4, 4, 3), 255.0), progress=False)


def test_encoding_new_shapes_from_instances_or_samples() -> None:
    pipe = make_pipeline(modality="shape")
    shapes = ProceduralShapes(num_instances=2, seed=0)
    instances = [shapes[index] for index in range(2)]
    from_instances = pipe.encode(instances, steps=4, points_per_shape=512, progress=False)
    # instances draw their SDF samples seeded by their position, as the encoder does with the data set index
    samples = [sample_sdf(shape, 512, seed=index) for index, shape in enumerate(instances)]
    points = np.stack([points for points, _ in samples])
    sdf = np.stack([values for _, values in samples])
    from_samples = pipe.encode((points, sdf), steps=4, progress=False)
    assert all(torch.equal(from_instances[name], from_samples[name]) for name in from_samples)
    assert from_samples["trunk.1.linear.B"].shape == (2, 16, 2)
    with pytest.raises(ValueError, match=r"must be \(points \(N, P, 3\), sdf \(N, P\)\)"):
        pipe.encode((points[..., :2], sdf), progress=False)


def test_an_mlp_pipeline_samples_whole_field_weights() -> None:
    pipe = make_pipeline(representation="mlp")
    assert pipe.transformer.tokens.kind == "tensor"  # HyperDiffusion's tokenisation for whole weight matrices
    out = pipe(2, class_labels=[0, 1], num_inference_steps=3, output_type="pt")
    assert out.images.shape == (2, RESOLUTION, RESOLUTION, 3) and "head.linear.weight" in out.weights
    with pytest.raises(ValueError, match="has no PEFT adapter form"):
        pipe.to_peft_model(out.weights, 0)
    with pytest.raises(ValueError, match="needs `initial`"):
        pipe.encode(torch.rand(1, RESOLUTION, RESOLUTION, 3), progress=False)
    initial = {name: value[0] for name, value in out.weights.items()}
    assert pipe.encode(torch.rand(1, RESOLUTION, RESOLUTION, 3), steps=2, initial=initial, progress=False)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    pipe = make_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["transformer"] == ["hf_wlora.models.weight_space_dit", "WeightSpaceDiT"]
    assert index["field"] == ["hf_wlora.fields.modeling_neural_field", "NeuralFieldModel"]
    assert index["resolution"] == RESOLUTION
    loaded = WeightSpacePipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(sample_weights(loaded, class_labels=1), sample_weights(pipe, class_labels=1))
    assert loaded.transformer.config.class_names == CLASSES
    card = ModelCard.load(tmp_path / "pipe" / "README.md")
    assert card.data.library_name == "hf_wlora" and "mlora_asym" in card.data.tags
    # a picture of samples in the folder it was loaded from (training writes one) goes along with a copy
    Image.new("RGB", (4, 4)).save(tmp_path / "pipe" / "samples.png")
    WeightSpacePipeline.from_pretrained(tmp_path / "pipe").save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "samples.png").read_bytes() == (tmp_path / "pipe" / "samples.png").read_bytes()
    assert "![Samples](samples.png)" in (tmp_path / "copy" / "README.md").read_text()
    assert f'WeightSpacePipeline.from_pretrained("{tmp_path / "pipe"}")' in card.text
    assert "Classes: ring, bar." in card.text
    # a transformer file without its normalisation statistics is refused (diffusers would make them 0 and 1 and only
    # log it: every sample would then come out in the normalised space)
    weights_file = tmp_path / "pipe" / "transformer" / "diffusion_pytorch_model.safetensors"
    save_file({k: v for k, v in load_file(weights_file).items() if k != "weight_std"}, weights_file, {"format": "pt"})
    for load in (
        lambda: WeightSpaceDiT.from_pretrained(tmp_path / "pipe" / "transformer"),
        lambda: WeightSpacePipeline.from_pretrained(tmp_path / "pipe"),
    ):
        with pytest.raises(ValueError, match=r"The transformer at .* does not hold .*: missing keys \['weight_std'\]"):
            load()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_weight_statistics_stay_float32_in_a_half_precision_pipeline(tmp_path: Path, dtype: torch.dtype) -> None:
    """mLoRA weights sit near 1 with a std near 0.01: rounded to bf16, the mean alone would move every denormalised
    sample by up to a third of a std. Loading with a dtype and casting later both keep the statistics float32."""
    pipe = make_pipeline()
    transformer = pipe.transformer
    transformer.set_normalization(1 + 0.01 * torch.randn(8, transformer.num_parameters, generator=torch.Generator()))
    statistics = {name: getattr(transformer, name).clone() for name in ("weight_mean", "weight_std", "frozen_values")}
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = WeightSpacePipeline.from_pretrained(tmp_path / "pipe", dtype=dtype)
    cast = WeightSpaceDiT.from_pretrained(tmp_path / "pipe" / "transformer").to(dtype)
    for model in (loaded.transformer, cast):
        assert model.dtype == dtype and model.token_out.weight.dtype == dtype
        for name, value in statistics.items():
            assert getattr(model, name).dtype == torch.float32 and torch.equal(getattr(model, name), value)
    loaded.set_progress_bar_config(disable=True)
    weights = loaded(num_samples=2, num_inference_steps=2, output_type="weights", class_labels=0).weights
    loaded.to_peft_model(weights, 0)  # the asymmetric mask's frozen entries come out exactly


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated")
def test_hub_round_trip(hub, tmp_path: Path) -> None:
    pipe = make_pipeline()
    repo_id = hub.unique_repo_id("tiny-pipeline")
    # pushed as training leaves it: a folder with a picture of samples, which the card shows
    pipe.save_pretrained(tmp_path / "pipe")
    Image.new("RGB", (4, 4), "red").save(tmp_path / "pipe" / "samples.png")
    WeightSpacePipeline.from_pretrained(tmp_path / "pipe").push_to_hub(repo_id)
    assert "samples.png" in HfApi().list_repo_files(repo_id)
    assert "![Samples](samples.png)" in ModelCard.load(repo_id).text
    WeightSpacePipeline.from_pretrained(repo_id).push_to_hub(repo_id)  # loaded from the Hub: its picture stays too
    assert "samples.png" in HfApi().list_repo_files(repo_id)
    assert "![Samples](samples.png)" in ModelCard.load(repo_id).text
    pipe.push_to_hub(repo_id)  # a pipeline without one: the earlier picture (another model's samples) goes
    loaded = WeightSpacePipeline.from_pretrained(repo_id)
    loaded.set_progress_bar_config(disable=True)
    assert torch.equal(sample_weights(loaded), sample_weights(pipe))
    card = ModelCard.load(repo_id)
    assert card.data.library_name == "hf_wlora" and f'from_pretrained("{repo_id}")' in card.text
    with pytest.raises(ValueError, match="never runs downloaded code"):
        WeightSpacePipeline.from_pretrained(repo_id, custom_pipeline="evil")
    # a push replaces what an earlier one left in the components' folders (a stale sharded checkpoint's index would
    # be loaded instead of the new weights), and keeps the repo's other files
    api = HfApi()
    stale = "transformer/diffusion_pytorch_model.safetensors.index.json"
    for path in (stale, "extra/notes.txt"):
        api.upload_file(path_or_fileobj=b"{}", path_in_repo=path, repo_id=repo_id)
    pipe.push_to_hub(repo_id)
    files = set(api.list_repo_files(repo_id))
    assert stale not in files and "extra/notes.txt" in files and "transformer/config.json" in files
    assert "samples.png" not in files and "![Samples]" not in ModelCard.load(repo_id).text


def test_bad_input_gives_clear_errors() -> None:
    pipe = make_pipeline()
    with pytest.raises(ValueError, match="num_samples must be a positive integer, got 0"):
        pipe(0)
    with pytest.raises(ValueError, match="num_inference_steps must be a positive integer"):
        pipe(1, num_inference_steps=0)
    with pytest.raises(ValueError, match=r"Class label 2 is out of range: use 0..1"):
        pipe(2, class_labels=[0, 2])
    with pytest.raises(ValueError, match="Unknown class name 'disc'"):
        pipe(1, class_labels="disc")
    with pytest.raises(ValueError, match="Got 2 class labels for 3 samples"):
        pipe(3, class_labels=[0, 1])
    with pytest.raises(ValueError, match="needs a class-conditional model and class_labels"):
        pipe(1, guidance_scale=2.0)
    no_dropout = make_pipeline()
    no_dropout.transformer.register_to_config(class_dropout_prob=0.0)
    with pytest.raises(ValueError, match="trained with class_dropout_prob=0: its 'no class' prediction"):
        no_dropout(1, class_labels=0, guidance_scale=2.0)
    for bad in (float("nan"), float("inf")):  # refused before any denoising step
        with pytest.raises(ValueError, match="guidance_scale must be a finite number"):
            pipe(1, class_labels=0, guidance_scale=bad)
    for bad in ((0.6, 0.4), (0.0, 1.5), (-0.1, 1.0), (float("nan"), 1.0), (0.5,), 0.5, "0.5, 1", ("0", "1")):
        with pytest.raises(ValueError, match=r"guidance_interval must be \(start, end\).*0 <= start <= end <= 1"):
            pipe(1, class_labels=0, guidance_scale=2.0, guidance_interval=bad)
    with pytest.raises(ValueError, match="resolution must be an integer >= 2, got 0"):
        pipe(1, resolution=0)
    with pytest.raises(ValueError, match="mesh_resolution must be an integer >= 2, got '8'"):
        pipe(1, mesh_resolution="8")
    with pytest.raises(ValueError, match="output_type must be one of"):
        pipe(1, output_type="svg")
    with pytest.raises(ValueError, match="output_type='mesh' is for 3-D fields"):
        pipe(1, output_type="mesh")
    with pytest.raises(ValueError, match=r"latents must have shape \(1, 196\)"):
        pipe(1, latents=torch.zeros(1, 10))
    with pytest.raises(ValueError, match="transformer is unconditional"):
        make_pipeline(num_classes=0)(1, class_labels=0)
    with pytest.raises(ValueError, match=r"do not follow the pipeline's spec \(mlora_asym, 196"):
        pipe.decode(torch.zeros(2, 200))
    with pytest.raises(ValueError, match="missing"):
        pipe.decode({"trunk.0.linear.A": torch.zeros(1, 2, 16)})
    with pytest.raises(ValueError, match="NaN or infinite"):
        pipe.decode(torch.full((1, 196), float("nan")))
    with pytest.raises(ValueError, match="baked base field"):
        WeightSpacePipeline(
            pipe.transformer,
            pipe.scheduler,
            make_field().__class__(
                make_field().config.__class__(modality="image", hidden_size=16, num_layers=2, num_fourier_features=8)
            ),
        )
