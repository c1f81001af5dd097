"""The transfer task and the parameter-efficient fine-tuning methods, framework-neutral.

A transfer cell pretrains the model on a source task, then fine-tunes it on a target task with a
small labelled budget, by one of five methods. The trainable-parameter rule lives here too, so that
both backends are checked against one count: trainable parameters are the scalars the optimizer
updates (BatchNorm moving statistics would not count).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bench.spec._validate import check_choice, check_float, check_int
from bench.spec.model import Conv2D, Dense, ModelSpec

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
      train with the new head; the update factor B starts at zero.

    `layers` limits adapters and LoRA to the named layers (None: every eligible layer).
    """

    method: str = "lora"
    rank: int = 4
    lora_alpha: float = 8.0
    adapter_units: int = 16
    adapter_channels: int = 4
    layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_choice("PeftParams", "method", self.method, PEFT_METHODS)
        check_int("PeftParams", "rank", self.rank, 1, 4096)
        check_float("PeftParams", "lora_alpha", self.lora_alpha, 0.0, 1e6, min_inclusive=False)
        check_int("PeftParams", "adapter_units", self.adapter_units, 1, 65536)
        check_int("PeftParams", "adapter_channels", self.adapter_channels, 1, 65536)
        if self.layers is not None and (
            not isinstance(self.layers, tuple) or not self.layers or not all(isinstance(n, str) and n for n in self.layers)
        ):
            raise ValueError(f"PeftParams.layers must be None or a non-empty tuple of layer names, got {self.layers!r}")

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

        `spec` is the pretrained network with its head already sized for the target task.
        """
        shapes = spec.parameter_shapes()
        head = spec.layers[-1].name
        sizes = {name: _size(shape) for name, shape in shapes.items()}
        head_count = sum(size for name, size in sizes.items() if name.startswith(f"{head}."))
        counts = {"base": 0, "head": head_count, "biases": 0, "adapters": 0, "lora": 0}
        if self.method == "full":
            counts["base"] = sum(sizes.values()) - head_count
        elif self.method == "bitfit":
            counts["biases"] = sum(
                size for name, size in sizes.items() if name.endswith(".bias") and not name.startswith(f"{head}.")
            )
        elif self.method in ("adapters", "lora"):
            infos = {info.layer.name: info for info in spec.layer_infos()}
            for name in self.adapted_layers(spec):
                info = infos[name]
                layer = info.layer
                if self.method == "lora":
                    if isinstance(layer, Conv2D):
                        fan_in = info.input_shape[0] * layer.kernel_size**2
                    else:
                        fan_in = info.input_shape[0]
                    fan_out = layer.out_channels if isinstance(layer, Conv2D) else layer.units
                    counts["lora"] += self.rank * (fan_in + fan_out)
                else:
                    width = info.output_shape[0]
                    bottleneck = self.adapter_channels if isinstance(layer, Conv2D) else self.adapter_units
                    counts["adapters"] += 2 * width * bottleneck + bottleneck + width
        counts["total"] = sum(counts.values())
        return counts

    def to_dict(self) -> dict:
        return asdict(self)


def _size(shape: tuple[int, ...]) -> int:
    size = 1
    for dim in shape:
        size *= dim
    return size
