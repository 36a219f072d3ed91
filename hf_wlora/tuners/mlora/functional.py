"""The instance-batched path: run one model with N instances' adapter factors at once.

Fitting thousands of per-instance adapters through PEFT's adapter slots is slow (one forward per instance, and
adding named adapters gets slower as their number grows). Here the factors of N instances are stacked tensors of
shape (N, ...) swapped into the PEFT model with `functional_call`, so every instance goes through exactly the layer
code of the PEFT path (same math, same masks) while the work of all N is done in batched kernels. Gradients flow to
the stacked factors, so an optimiser over them fits all instances at once.

Two ways to vectorise over instances:
- "vmap" (any model, any supported layer): `torch.func.vmap` over the model's forward.
- "broadcast" (faster): the model is called once with the stacked factors and inputs whose first dimension is the
  instance. This needs a forward that treats leading dimensions as batch dimensions all the way through (true for
  hf_wlora's neural fields and for plain MLPs) and adapted layers that are all `nn.Linear`; each of them then runs
  one batched matmul with the bias fused in (`baddbmm`), without vmap's per-op overhead.

Factors are keyed like the representation spec: `"{layer}.A"` (N, r, d_in) and `"{layer}.B"` (N, d_out, r).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.utils import _pytree as pytree  # the tree utilities vmap itself uses; they know ModelOutput

from .layer import Linear, MLoraLayer

Vectorize = Literal["vmap", "broadcast"]

# Instances per chunk when the caller does not choose: about this many activation elements (points x layer width)
# per chunk. On the CPU, 2 MiB of float32 per activation: a chunk's element-wise passes (activations, residuals and
# their gradients) then run from the cache instead of memory, and the chunk is still large enough to amortise the
# per-chunk Python work (about 1 ms); 4x larger chunks were 8-13% slower per fitting step at bench_encode.py's
# 128-wide field and no faster anywhere measured (benchmarks/RESULTS.md, issue 15). Elsewhere (GPUs) the former,
# larger target: fewer kernel launches, not measured here.
_TARGET_CHUNK_ELEMENTS = {"cpu": 2**19}
_DEFAULT_TARGET_CHUNK_ELEMENTS = 2**21


def _adapter_layers(model: nn.Module, adapter_name: str) -> list[tuple[str, MLoraLayer]]:
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, MLoraLayer) and adapter_name in module.mlora_A
    ]
    if not layers:
        raise ValueError(f"The model has no mLoRA adapter named {adapter_name!r}.")
    return layers


def adapter_factor_names(model: nn.Module, adapter_name: str = "default") -> dict[str, str]:
    """Map each factor's spec name (`"{layer}.A"`, `"{layer}.B"`) to its parameter name in `model`."""
    names: dict[str, str] = {}
    for module_name, layer in _adapter_layers(model, adapter_name):
        prefix = f"{module_name}." if module_name else ""
        names[f"{layer.layer_key}.A"] = f"{prefix}mlora_A.{adapter_name}"
        names[f"{layer.layer_key}.B"] = f"{prefix}mlora_B.{adapter_name}"
    return names


def adapter_factors(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """The factors of one adapter of `model`, keyed by spec name (views of the parameters, not copies)."""
    parameters = dict(model.named_parameters())
    return {spec_name: parameters[name] for spec_name, name in adapter_factor_names(model, adapter_name).items()}


def stack_adapter_factors(instances: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack per-instance factor dicts (same names and shapes) into one dict of (N, ...) tensors."""
    if not instances:
        raise ValueError("stack_adapter_factors needs at least one instance.")
    names = list(instances[0])
    for index, instance in enumerate(instances):
        if set(instance) != set(names):
            raise ValueError(
                f"Instance {index} has factors {sorted(instance)}, but instance 0 has {sorted(names)}; every "
                "instance must come from the same representation spec."
            )
    return {name: torch.stack([instance[name].detach() for instance in instances]) for name in names}


def _check_batch(
    model: nn.Module,
    adapter_name: str,
    factors: Mapping[str, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    vectorize: Vectorize,
) -> int:
    """Validate the factors and inputs against the model; return the number of instances."""
    layers = _adapter_layers(model, adapter_name)
    if vectorize not in ("vmap", "broadcast"):
        raise ValueError(f"vectorize must be 'vmap' or 'broadcast', got {vectorize!r}.")
    if vectorize == "broadcast":
        not_linear = [name for name, layer in layers if not isinstance(layer, Linear)]
        if not_linear:
            raise ValueError(
                f"vectorize='broadcast' needs every adapted layer to be nn.Linear, but {not_linear} are not; use "
                "vectorize='vmap'."
            )
    for module_name, layer in layers:
        if layer.merged or layer.disable_adapters or adapter_name not in layer.active_adapters:
            raise ValueError(
                f"Adapter {adapter_name!r} must be active, enabled and unmerged in layer {module_name!r} for the "
                "batched path; call `set_adapter`, `enable_adapter_layers` or `unmerge_adapter` first."
            )
    expected = {
        f"{layer.layer_key}.{factor}": tuple(getattr(layer, f"mlora_{factor}")[adapter_name].shape)
        for _, layer in layers
        for factor in ("A", "B")
    }
    missing, unexpected = sorted(expected.keys() - factors.keys()), sorted(factors.keys() - expected.keys())
    if missing or unexpected:
        raise ValueError(f"Factor names do not match the adapter: missing {missing}, unexpected {unexpected}.")
    counts = set()
    for name, value in factors.items():
        if tuple(value.shape[1:]) != expected[name]:
            raise ValueError(
                f"Factor {name!r} has shape {tuple(value.shape)}; expected (num_instances, *{expected[name]})."
            )
        counts.add(value.shape[0])
    counts.update(tensor.shape[0] for tensor in inputs)
    if len(counts) != 1:
        raise ValueError(
            f"Every factor and input needs the same leading instance dimension, got sizes {sorted(counts)}."
        )
    return counts.pop()


def chunk_size_for(inputs: Sequence[torch.Tensor], width: int) -> int:
    """Instances per chunk: about 512K activation elements (points x layer width) per chunk on the CPU, 2M on other
    devices, at least 1.

    `inputs[0]` is (N, ..., features), on the device that computes: everything between the instance and feature
    dimensions counts as points.
    """
    first = inputs[0]
    points = first[0].numel() // max(1, first.shape[-1]) if first.dim() > 1 else 1
    return max(1, min(first.shape[0], _target_chunk_elements(first.device) // max(1, points * width)))


def points_per_chunk(device: torch.device, width: int) -> int:
    """Points of one instance that fill a chunk alone (the target of `chunk_size_for` over the layer width, at least
    1): how finely a pointwise model's evaluation at more points than that is split (`Representation.forward`)."""
    return max(1, _target_chunk_elements(device) // max(1, width))


def _target_chunk_elements(device: torch.device) -> int:
    return _TARGET_CHUNK_ELEMENTS.get(device.type, _DEFAULT_TARGET_CHUNK_ELEMENTS)


def default_chunk_size(model: nn.Module, inputs: Sequence[torch.Tensor], adapter_name: str = "default") -> int:
    """`chunk_size_for` with the width of the widest adapted layer."""
    widest = max(max(layer.in_features, layer.out_features) for _, layer in _adapter_layers(model, adapter_name))
    return chunk_size_for(inputs, widest)


def batched_call(
    model: nn.Module,
    parameters: Mapping[str, torch.Tensor],
    *inputs: torch.Tensor,
    chunk_size: int,
    vectorize: Vectorize = "vmap",
    **kwargs: Any,
) -> Any:
    """Run `model` once per instance with its own values of some parameters: the engine of the batched path.

    `parameters` maps parameter names of `model` (as in `named_parameters`) to (N, *shape) tensors; every other
    parameter is shared. No checks: `batched_forward` validates mLoRA factors before calling this, and the encoder
    uses it directly for the mlp representations, which batch a standalone MLP's own weights.
    """
    if vectorize == "broadcast":
        num_instances = inputs[0].shape[0]
        chunks = [
            functional_call(
                model,
                {name: value[start : start + chunk_size] for name, value in parameters.items()},
                tuple(x[start : start + chunk_size] for x in inputs),
                kwargs,
            )
            for start in range(0, num_instances, chunk_size)
        ]
        return chunks[0] if len(chunks) == 1 else pytree.tree_map(lambda *parts: torch.cat(parts), *chunks)

    def one_instance(instance_parameters: dict[str, torch.Tensor], *instance_inputs: torch.Tensor) -> Any:
        return functional_call(model, instance_parameters, instance_inputs, kwargs)

    return vmap(one_instance, chunk_size=chunk_size)(dict(parameters), *inputs)


def batched_forward(
    model: nn.Module,
    factors: Mapping[str, torch.Tensor],
    *inputs: torch.Tensor,
    adapter_name: str = "default",
    chunk_size: int | None = None,
    vectorize: Vectorize = "vmap",
    **kwargs: Any,
) -> Any:
    """Run `model` for N instances at once: instance i uses `factors[name][i]` and `inputs[j][i]`.

    Args:
        model: A model with an mLoRA adapter `adapter_name` (a `PeftModel` or a model the adapter was injected into).
        factors: Stacked factors keyed by spec name, each (N, *factor_shape); see `stack_adapter_factors`.
        *inputs: Positional model inputs, each with a leading instance dimension N.
        adapter_name: Which adapter's parameters the factors replace; it must be active and unmerged.
        chunk_size: Instances per vectorised chunk (None: chosen from the input size; see `default_chunk_size`).
        vectorize: "vmap" (any model) or "broadcast" (faster; see the module docstring for when it applies).
        **kwargs: Further keyword arguments of the model's forward, shared by all instances.

    Returns:
        The model's output with a leading instance dimension, equal to running the PEFT model once per instance
        with that instance's factors loaded.
    """
    parameters = batch_parameters(model, factors, inputs, adapter_name, vectorize)
    if chunk_size is None:
        chunk_size = default_chunk_size(model, inputs, adapter_name)
    return batched_call(model, parameters, *inputs, chunk_size=chunk_size, vectorize=vectorize, **kwargs)


def batch_parameters(
    model: nn.Module,
    factors: Mapping[str, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    adapter_name: str = "default",
    vectorize: Vectorize = "vmap",
) -> dict[str, torch.Tensor]:
    """Check stacked factors and inputs against the model's adapter, and key the factors by parameter name: what
    `batched_call` takes. The same tensors, not copies, so gradients reach the caller's factors.

    Checking walks every module of the model; callers that run many chunks or steps with the same factors check once
    and call `batched_call` per chunk (`batched_loss_backward`, the encoder's representations).
    """
    _check_batch(model, adapter_name, factors, inputs, vectorize)
    names = adapter_factor_names(model, adapter_name)
    return {names[spec_name]: value for spec_name, value in factors.items()}


def chunked_loss_backward(
    forward: Callable[..., Any],
    parameters: Mapping[str, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    loss_fn: Callable[..., torch.Tensor],
    chunk_size: int,
) -> torch.Tensor:
    """Forward and backward chunk by chunk; accumulate d(sum of losses)/d(parameter) into `.grad`; return losses.

    `forward(chunk_parameters, *chunk_inputs)` computes a chunk's outputs; `loss_fn(outputs, *chunk_targets)` returns
    one loss per instance of the chunk. `parameters` are (N, ...) leaf tensors with `requires_grad=True`.
    """
    not_leaf = sorted(name for name, value in parameters.items() if not (value.is_leaf and value.requires_grad))
    if not_leaf:
        raise ValueError(f"Factors {not_leaf} must be leaf tensors with requires_grad=True to receive gradients.")
    num_instances = next(iter(parameters.values())).shape[0]
    names = list(parameters)
    for name in names:
        if parameters[name].grad is None:
            parameters[name].grad = torch.zeros_like(parameters[name])
    losses = []
    for start in range(0, num_instances, chunk_size):
        chunk = slice(start, start + chunk_size)
        # Fresh leaves per chunk: autograd then writes only this chunk's gradient slice, so the bookkeeping stays
        # linear in N (slicing the full leaves would accumulate a full-size zero-padded gradient per chunk).
        chunk_parameters = {name: parameters[name][chunk].detach().requires_grad_(True) for name in names}
        outputs = forward(chunk_parameters, *(x[chunk] for x in inputs))
        chunk_losses = loss_fn(outputs, *(y[chunk] for y in targets))
        expected = min(chunk_size, num_instances - start)
        if chunk_losses.shape != (expected,):
            raise ValueError(
                f"loss_fn must return one loss per instance of the chunk, shape ({expected},); got "
                f"{tuple(chunk_losses.shape)}."
            )
        gradients = torch.autograd.grad(chunk_losses.sum(), [chunk_parameters[name] for name in names])
        for name, gradient in zip(names, gradients, strict=True):
            parameters[name].grad[chunk] += gradient
        losses.append(chunk_losses.detach())
    return torch.cat(losses)


def batched_loss_backward(
    model: nn.Module,
    factors: Mapping[str, torch.Tensor],
    inputs: Sequence[torch.Tensor],
    targets: Sequence[torch.Tensor],
    loss_fn: Callable[..., torch.Tensor],
    adapter_name: str = "default",
    chunk_size: int | None = None,
    vectorize: Vectorize = "vmap",
) -> torch.Tensor:
    """One fitting step's forward and backward for N instances; returns the N per-instance losses.

    The gradient of the *sum* of per-instance losses is accumulated into each factor's `.grad`, so an element-wise
    optimiser such as Adam gives every instance exactly the update it would get if fitted alone. Forward and backward
    run chunk by chunk (`chunk_size` instances at a time), which keeps each chunk's activations near the cache and
    the memory bounded by one chunk, whatever N is.

    Args:
        model, factors, adapter_name: As in `batched_forward`; the factors must be leaf tensors with
            `requires_grad=True`.
        inputs: Model inputs, each with a leading instance dimension N.
        targets: Tensors with a leading instance dimension N, passed (sliced per chunk) to `loss_fn`.
        loss_fn: `loss_fn(outputs, *targets) -> (chunk,)` per-instance losses of one chunk.
        chunk_size: Instances per chunk (None: `default_chunk_size`).
        vectorize: "vmap" or "broadcast", as in `batched_forward`.
    """
    parameters = batch_parameters(model, factors, (*inputs, *targets), adapter_name, vectorize)
    if chunk_size is None:
        chunk_size = default_chunk_size(model, inputs, adapter_name)

    def forward(chunk_parameters: dict[str, torch.Tensor], *chunk_inputs: torch.Tensor) -> Any:
        return batched_call(model, chunk_parameters, *chunk_inputs, chunk_size=chunk_size, vectorize=vectorize)

    return chunked_loss_backward(forward, parameters, inputs, targets, loss_fn, chunk_size)
