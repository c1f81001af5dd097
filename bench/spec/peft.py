"""The transfer task and the parameter-efficient fine-tuning methods, framework-neutral.

A transfer cell pretrains the model on a source task, then fine-tunes it on a target task with a
small labelled budget, by one of five methods. The trainable-parameter rule lives here too, so that
both backends are checked against one count: trainable parameters are the scalars the optimizer
updates (BatchNorm moving statistics would not count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from bench.spec._validate import check_choice, check_float, check_int, check_layer_names
from bench.spec.model import Adapter, Conv2D, Dense, MaxPool2D, ModelSpec, ReLU
from bench.spec.weights import Weights, initial_weights

# Stream of the generator for fine-tuning's new weights (head, adapters, LoRA A), apart from the
# network's initial weights.
PEFT_INIT_STREAM = 17

PEFT_METHODS = ("full", "linear-probe", "bitfit", "adapters", "lora")


@dataclass(frozen=True)
class TransferTask:
    """Pretrain on `source_classes`, fine-tune on `target_classes` with `examples_per_class` labels each.

    Classes are the dataset's label ids; each task relabels its classes 0..k-1 in the order given.
    `target_dataset` None means the target task uses the profile's dataset, and then the two class
    sets must not overlap. The target task is evaluated on every test image of its classes.
    """

    source_classes: tuple[int, ...] = (0, 1, 2, 3, 4)
    target_classes: tuple[int, ...] = (5, 6, 7, 8, 9)
    target_dataset: str | None = None
    examples_per_class: int = 100
    pretrain_epochs: int | None = None
    finetune_epochs: int = 20
    finetune_learning_rate: float = 0.01

    def __post_init__(self) -> None:
        for name in ("source_classes", "target_classes"):
            if isinstance(getattr(self, name), list):  # from JSON
                object.__setattr__(self, name, tuple(getattr(self, name)))
            classes = getattr(self, name)
            if not isinstance(classes, tuple) or len(classes) < 2:
                raise ValueError(f"TransferTask.{name} must be a tuple of at least 2 class ids, got {classes!r}")
            for value in classes:
                check_int("TransferTask", name, value, 0, 1_000_000)
            if len(set(classes)) != len(classes):
                raise ValueError(f"TransferTask.{name} must not repeat a class, got {classes!r}")
        if self.target_dataset is None and set(self.source_classes) & set(self.target_classes):
            raise ValueError(
                "TransferTask: source_classes and target_classes overlap "
                f"({sorted(set(self.source_classes) & set(self.target_classes))}) on one dataset; "
                "use disjoint classes or set target_dataset"
            )
        check_int("TransferTask", "examples_per_class", self.examples_per_class, 1, 1_000_000)
        if self.pretrain_epochs is not None:
            check_int("TransferTask", "pretrain_epochs", self.pretrain_epochs, 1, 10000)
        check_int("TransferTask", "finetune_epochs", self.finetune_epochs, 1, 10000)
        check_float("TransferTask", "finetune_learning_rate", self.finetune_learning_rate, 0.0, 10.0, min_inclusive=False)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PeftParams:
    """One fine-tuning method and its sizes.

    - full: every parameter trains, the head is new.
    - linear-probe: only the new head trains.
    - bitfit: every bias and the new head train.
    - adapters: zero-initialized residual bottlenecks train with the new head: a dense bottleneck of
      `adapter_units` after each hidden dense layer, and a 1x1 conv bottleneck of `adapter_channels`
      after each conv layer.
    - lora: rank-`rank` updates (scale `lora_alpha` / `rank`) of the conv and hidden dense kernels
      train with the new head. The update factor B starts at zero.

    `layers` limits adapters and LoRA to the named layers (None: every eligible layer).
    """

    method: str = "lora"
    rank: int = 4
    lora_alpha: float = 8.0
    adapter_units: int = 16
    adapter_channels: int = 4
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):  # from JSON
            object.__setattr__(self, "layers", tuple(self.layers))
        check_choice("PeftParams", "method", self.method, PEFT_METHODS)
        check_int("PeftParams", "rank", self.rank, 1, 4096)
        check_float("PeftParams", "lora_alpha", self.lora_alpha, 0.0, 1e6, min_inclusive=False)
        check_int("PeftParams", "adapter_units", self.adapter_units, 1, 65536)
        check_int("PeftParams", "adapter_channels", self.adapter_channels, 1, 65536)
        check_layer_names("PeftParams", self.layers)

    def eligible_layers(self, spec: ModelSpec) -> tuple[str, ...]:
        """Name the layers that adapters or LoRA attach to: conv layers and hidden dense layers."""
        head = spec.layers[-1].name
        return tuple(
            layer.name for layer in spec.layers if isinstance(layer, (Conv2D, Dense)) and layer.name != head
        )

    def adapted_layers(self, spec: ModelSpec) -> tuple[str, ...]:
        """Name the layers this method adapts, after checking `layers` against the spec."""
        eligible = self.eligible_layers(spec)
        if self.layers is None:
            return eligible
        unknown = [name for name in self.layers if name not in eligible]
        if unknown:
            raise ValueError(
                f"PeftParams.layers: unknown or ineligible layers {unknown}; valid layers for {spec.name}: "
                f"{', '.join(eligible)}"
            )
        return tuple(name for name in eligible if name in self.layers)

    def trainable_parameters(self, spec: ModelSpec) -> dict[str, int]:
        """Count the scalars the optimizer updates, by group: base, head, biases, adapters, lora.

        `spec` is the pretrained network with its head already sized for the target task. The count
        comes from the names trainable_names selects in adapted_spec, the same selection the backends
        train, so the rule exists once.
        """
        adapted = adapted_spec(spec, self)
        shapes = adapted.parameter_shapes()
        head = spec.layers[-1].name
        adapters = {layer.name for layer in adapted.layers if isinstance(layer, Adapter)}
        counts = {"base": 0, "head": 0, "biases": 0, "adapters": 0, "lora": 0}
        for name in trainable_names(adapted, self.method):
            if name.startswith(f"{head}."):
                group = "head"
            elif name.endswith((".lora_a", ".lora_b")):
                group = "lora"
            elif name.split(".", 1)[0] in adapters:
                group = "adapters"
            elif self.method == "bitfit":
                group = "biases"
            else:
                group = "base"
            counts[group] += _size(shapes[name])
        counts["total"] = sum(counts.values())
        return counts

    def to_dict(self) -> dict:
        return asdict(self)


def _size(shape: tuple[int, ...]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size


def with_head(spec: ModelSpec, num_classes: int) -> ModelSpec:
    """Return `spec` with its last layer (a Dense head) resized to `num_classes` outputs."""
    head = spec.layers[-1]
    if not isinstance(head, Dense):
        raise ValueError(f"model {spec.name!r} must end in a Dense head to be fine-tuned, ends in {head.kind}")
    return replace(spec, num_classes=num_classes, layers=(*spec.layers[:-1], replace(head, units=num_classes)))


def adapted_spec(spec: ModelSpec, params: PeftParams) -> ModelSpec:
    """Return `spec` with the adapters or LoRA of `params` (unchanged for the other methods).

    LoRA sets lora_rank and lora_alpha on the adapted layers. An adapter goes after each adapted
    layer's block: after the ReLU that follows a dense layer, and after the ReLU and max pooling that
    follow a conv layer.
    """
    if params.method not in ("adapters", "lora"):
        return spec
    adapted = set(params.adapted_layers(spec))
    if params.method == "lora":
        layers = tuple(
            replace(layer, lora_rank=params.rank, lora_alpha=params.lora_alpha) if layer.name in adapted else layer
            for layer in spec.layers
        )
        return replace(spec, layers=layers)

    layers = list(spec.layers)
    result = []
    pending = None
    for index, layer in enumerate(layers):
        result.append(layer)
        if layer.name in adapted:
            pending = layer
        following = layers[index + 1] if index + 1 < len(layers) else None
        if pending is not None and not isinstance(following, (ReLU, MaxPool2D)):
            width = params.adapter_channels if isinstance(pending, Conv2D) else params.adapter_units
            result.append(Adapter(f"adapter_{pending.name}", width))
            pending = None
    return replace(spec, layers=tuple(result))


def trainable_names(spec: ModelSpec, method: str) -> set[str]:
    """Name the canonical parameters `method` trains in `spec` (the adapted spec with its new head)."""
    check_choice("PeftParams", "method", method, PEFT_METHODS)
    names = set(spec.parameter_shapes())
    head = spec.layers[-1].name
    head_names = {name for name in names if name.startswith(f"{head}.")}
    if method == "full":
        return names
    if method == "linear-probe":
        return head_names
    if method == "bitfit":
        return head_names | {name for name in names if name.endswith(".bias")}
    if method == "adapters":
        adapters = {layer.name for layer in spec.layers if isinstance(layer, Adapter)}
        return head_names | {name for name in names if name.split(".", 1)[0] in adapters}
    return head_names | {name for name in names if name.endswith((".lora_a", ".lora_b"))}


def finetune_weights(pretrained: ModelSpec, weights: Weights, spec: ModelSpec, seed: int) -> Weights:
    """Build the starting weights of fine-tuning: pretrained body, new head, identity adapters and LoRA.

    `spec` is the adapted spec with its new head. The head, adapter down-projections and LoRA A are
    drawn (Glorot uniform, biases zero) from default_rng([seed, PEFT_INIT_STREAM]). Adapter
    up-projections and LoRA B are zero, so the network starts as the pretrained one.
    """
    fresh = initial_weights(spec, seed, stream=PEFT_INIT_STREAM)
    head = spec.layers[-1].name
    pretrained_names = set(pretrained.parameter_shapes())
    result: Weights = {}
    for name, value in fresh.items():
        if name.startswith(f"{head}."):
            result[name] = value
        elif name in pretrained_names:
            result[name] = np.array(weights[name], dtype=np.float32, copy=True)
        elif name.endswith((".up_weight", ".up_bias", ".lora_b")):
            result[name] = np.zeros_like(value)
        else:
            result[name] = value
    return result


def merge_lora(spec: ModelSpec, weights: Weights) -> tuple[ModelSpec, Weights]:
    """Fold every LoRA update into its kernel: W + alpha / rank * B A; return the plain spec and weights."""
    merged = {name: value for name, value in weights.items() if not name.endswith((".lora_a", ".lora_b"))}
    layers = []
    for layer in spec.layers:
        if isinstance(layer, (Conv2D, Dense)) and layer.lora_rank:
            kernel = weights[f"{layer.name}.weight"]
            a = weights[f"{layer.name}.lora_a"].reshape(layer.lora_rank, -1).astype(np.float64)
            b = weights[f"{layer.name}.lora_b"].reshape(-1, layer.lora_rank).astype(np.float64)
            update = (layer.lora_alpha / layer.lora_rank) * (b @ a)
            merged[f"{layer.name}.weight"] = (kernel.astype(np.float64) + update.reshape(kernel.shape)).astype(np.float32)
            layer = replace(layer, lora_rank=0, lora_alpha=0.0)
        layers.append(layer)
    return replace(spec, layers=tuple(layers)), merged
