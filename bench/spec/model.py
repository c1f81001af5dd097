"""ModelSpec: a framework-neutral network description that both backends build from.

Shapes are canonical: activations are (channels, height, width) without the batch axis, conv kernels
are (out_channels, in_channels, kernel_h, kernel_w) (OIHW), dense kernels are (out_features,
in_features), and Flatten orders features channel-major (C, H, W), as PyTorch does. A backend whose
native layout differs (Keras uses NHWC and kernels HWIO) converts at its weight import and export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from bench.spec._validate import check_float, check_int, check_name

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Conv2D:
    """2-D convolution with a square kernel, zero padding of `padding` pixels on each side."""

    name: str
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    bias: bool = True
    # LoRA: with lora_rank > 0 the kernel computes as weight + lora_alpha / lora_rank * B A (see _check_lora).
    lora_rank: int = 0
    lora_alpha: float = 0.0
    kind: str = field(default="conv2d", init=False)

    def __post_init__(self) -> None:
        check_name("Conv2D", "name", self.name)
        check_int(f"Conv2D {self.name!r}", "out_channels", self.out_channels, 1)
        check_int(f"Conv2D {self.name!r}", "kernel_size", self.kernel_size, 1)
        check_int(f"Conv2D {self.name!r}", "stride", self.stride, 1)
        check_int(f"Conv2D {self.name!r}", "padding", self.padding, 0)
        _check_lora(f"Conv2D {self.name!r}", self.lora_rank, self.lora_alpha)

    def output_shape(self, input_shape: Shape) -> Shape:
        channels, height, width = _expect_chw(self.name, input_shape)
        out_h = (height + 2 * self.padding - self.kernel_size) // self.stride + 1
        out_w = (width + 2 * self.padding - self.kernel_size) // self.stride + 1
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"Conv2D {self.name!r}: kernel {self.kernel_size} does not fit input {input_shape}"
            )
        return (self.out_channels, out_h, out_w)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        in_channels = input_shape[0]
        k = self.kernel_size
        shapes = {"weight": (self.out_channels, in_channels, k, k)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        if self.lora_rank:
            # A is a k x k conv to lora_rank channels, B a 1 x 1 conv back to out_channels.
            shapes["lora_a"] = (self.lora_rank, in_channels, k, k)
            shapes["lora_b"] = (self.out_channels, self.lora_rank, 1, 1)
        return shapes


@dataclass(frozen=True)
class MaxPool2D:
    """Max pooling with a square window; the stride equals the window size."""

    name: str
    pool_size: int = 2
    kind: str = field(default="maxpool2d", init=False)

    def __post_init__(self) -> None:
        check_name("MaxPool2D", "name", self.name)
        check_int(f"MaxPool2D {self.name!r}", "pool_size", self.pool_size, 1)

    def output_shape(self, input_shape: Shape) -> Shape:
        channels, height, width = _expect_chw(self.name, input_shape)
        if height < self.pool_size or width < self.pool_size:
            raise ValueError(
                f"MaxPool2D {self.name!r}: window {self.pool_size} does not fit input {input_shape}"
            )
        return (channels, height // self.pool_size, width // self.pool_size)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {}


@dataclass(frozen=True)
class Flatten:
    """Flatten (C, H, W) to C*H*W features in channel-major order."""

    name: str = "flatten"
    kind: str = field(default="flatten", init=False)

    def __post_init__(self) -> None:
        check_name("Flatten", "name", self.name)

    def output_shape(self, input_shape: Shape) -> Shape:
        size = 1
        for dim in input_shape:
            size *= dim
        return (size,)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {}


@dataclass(frozen=True)
class Dense:
    """Fully connected layer."""

    name: str
    units: int
    bias: bool = True
    lora_rank: int = 0
    lora_alpha: float = 0.0
    kind: str = field(default="dense", init=False)

    def __post_init__(self) -> None:
        check_name("Dense", "name", self.name)
        check_int(f"Dense {self.name!r}", "units", self.units, 1)
        _check_lora(f"Dense {self.name!r}", self.lora_rank, self.lora_alpha)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense {self.name!r} needs a flat input, got shape {input_shape}; add a Flatten layer"
            )
        return (self.units,)

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes = {"weight": (self.units, input_shape[0])}
        if self.bias:
            shapes["bias"] = (self.units,)
        if self.lora_rank:
            shapes["lora_a"] = (self.lora_rank, input_shape[0])
            shapes["lora_b"] = (self.units, self.lora_rank)
        return shapes


@dataclass(frozen=True)
class ReLU:
    name: str
    kind: str = field(default="relu", init=False)

    def __post_init__(self) -> None:
        check_name("ReLU", "name", self.name)

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {}


@dataclass(frozen=True)
class Dropout:
    """Dropout at `rate` during training, identity at inference."""

    name: str
    rate: float
    kind: str = field(default="dropout", init=False)

    def __post_init__(self) -> None:
        check_name("Dropout", "name", self.name)
        check_float(f"Dropout {self.name!r}", "rate", self.rate, 0.0, 1.0, max_inclusive=False)

    def output_shape(self, input_shape: Shape) -> Shape:
        return input_shape

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {}


@dataclass(frozen=True)
class Adapter:
    """A residual bottleneck adapter: x + up(relu(down(x))).

    On a (C, H, W) input, down and up are 1x1 convolutions (C to `bottleneck` channels and back). On a
    flat input they are dense layers. Both have biases. With `up` zero-initialized the adapter starts
    as the identity.
    """

    name: str
    bottleneck: int
    kind: str = field(default="adapter", init=False)

    def __post_init__(self) -> None:
        check_name("Adapter", "name", self.name)
        check_int(f"Adapter {self.name!r}", "bottleneck", self.bottleneck, 1)

    def output_shape(self, input_shape: Shape) -> Shape:
        if len(input_shape) not in (1, 3):
            raise ValueError(f"Adapter {self.name!r} needs a (C, H, W) or flat input, got shape {input_shape}")
        return input_shape

    def parameter_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        width = input_shape[0]
        spatial = (1, 1) if len(input_shape) == 3 else ()
        return {
            "down_weight": (self.bottleneck, width, *spatial),
            "down_bias": (self.bottleneck,),
            "up_weight": (width, self.bottleneck, *spatial),
            "up_bias": (width,),
        }


Layer = Union[Conv2D, MaxPool2D, Flatten, Dense, ReLU, Dropout, Adapter]


def _check_lora(owner: str, rank: int, alpha: float) -> None:
    """Check LoRA fields: the merged kernel is weight + alpha / rank * B A (canonical B @ A)."""
    check_int(owner, "lora_rank", rank, 0, 65536)
    if rank:
        check_float(owner, "lora_alpha", alpha, 0.0, 1e6, min_inclusive=False)


@dataclass(frozen=True)
class LayerInfo:
    """One layer with the canonical shapes that shape inference gave it."""

    layer: Layer
    input_shape: Shape
    output_shape: Shape
    parameter_shapes: dict[str, Shape]


@dataclass(frozen=True)
class ModelSpec:
    """An ordered list of layers on a (channels, height, width) input, ending in `num_classes` logits."""

    name: str
    input_shape: Shape
    num_classes: int
    layers: tuple[Layer, ...]
    description: str = ""

    def __post_init__(self) -> None:
        check_name("ModelSpec", "name", self.name)
        if len(self.input_shape) != 3 or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.input_shape
        ):
            raise ValueError(
                f"ModelSpec.input_shape must be (channels, height, width) of positive integers, "
                f"got {self.input_shape!r}"
            )
        check_int("ModelSpec", "num_classes", self.num_classes, 2)
        if not self.layers:
            raise ValueError(f"ModelSpec {self.name!r}: layers must not be empty")
        names = [layer.name for layer in self.layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"ModelSpec {self.name!r}: layer names must be unique, repeated: {duplicates}")

        # Shape inference runs once here so that a spec that cannot be built fails on construction.
        output_shape = self.layer_infos()[-1].output_shape
        if output_shape != (self.num_classes,):
            raise ValueError(
                f"ModelSpec {self.name!r}: last layer outputs {output_shape}, "
                f"expected ({self.num_classes},) logits"
            )

    def layer_infos(self) -> list[LayerInfo]:
        infos = []
        shape: Shape = tuple(self.input_shape)
        for layer in self.layers:
            out = layer.output_shape(shape)
            infos.append(LayerInfo(layer, shape, out, layer.parameter_shapes(shape)))
            shape = out
        return infos

    def parameter_shapes(self) -> dict[str, Shape]:
        """Canonical parameter names ("conv1.weight", ...) and shapes, in layer order."""
        shapes: dict[str, Shape] = {}
        for info in self.layer_infos():
            for param, shape in info.parameter_shapes.items():
                shapes[f"{info.layer.name}.{param}"] = shape
        return shapes

    def count_parameters(self) -> int:
        total = 0
        for shape in self.parameter_shapes().values():
            size = 1
            for dim in shape:
                size *= dim
            total += size
        return total

    def fingerprint(self) -> str:
        """A short architecture id: layer kinds, names and parameter shapes, for records and parity checks."""
        import hashlib

        text = repr([(n, s) for n, s in self.parameter_shapes().items()]) + repr(
            [(layer.kind, layer.name) for layer in self.layers]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "parameters": self.count_parameters(),
            "fingerprint": self.fingerprint(),
            "layers": [_layer_to_dict(layer) for layer in self.layers],
        }


def _layer_to_dict(layer: Layer) -> dict:
    from dataclasses import asdict

    return asdict(layer)


def _expect_chw(name: str, shape: Shape) -> Shape:
    if len(shape) != 3:
        raise ValueError(f"layer {name!r} needs a (channels, height, width) input, got shape {shape}")
    return shape


def lenet5(num_classes: int = 10, in_channels: int = 1) -> ModelSpec:
    """Classic LeNet-5 (LeCun et al. 1998) with ReLU and max pooling on 32x32 inputs.

    28x28 images are zero-padded by 2 pixels to 32x32. With 10 classes it has 61,706 parameters:
    conv1 156, conv2 2,416, fc1 48,120, fc2 10,164, fc3 850.
    """
    return ModelSpec(
        name="lenet5",
        input_shape=(in_channels, 32, 32),
        num_classes=num_classes,
        description="LeNet-5: conv 6@5x5, maxpool 2, conv 16@5x5, maxpool 2, dense 120, 84, 10, ReLU",
        layers=(
            Conv2D("conv1", 6, 5),
            ReLU("relu1"),
            MaxPool2D("pool1", 2),
            Conv2D("conv2", 16, 5),
            ReLU("relu2"),
            MaxPool2D("pool2", 2),
            Flatten("flatten"),
            Dense("fc1", 120),
            ReLU("relu3"),
            Dense("fc2", 84),
            ReLU("relu4"),
            Dense("fc3", num_classes),
        ),
    )


def lenet5_wide(num_classes: int = 10, in_channels: int = 1, width: int = 2) -> ModelSpec:
    """LeNet-5 with `width` times the channels and hidden units: the distillation teacher.

    At width 2 (conv 12@5x5, conv 32@5x5, dense 240, 168, 10) it has 244,362 parameters, four times
    LeNet-5's, and about 3.4 times its multiply-accumulates, so it trains in minutes on a laptop CPU.
    """
    check_int("lenet5_wide", "width", width, 1, 64)
    return ModelSpec(
        name="lenet5-wide",
        input_shape=(in_channels, 32, 32),
        num_classes=num_classes,
        description=f"LeNet-5 at {width}x width: conv {6 * width}@5x5, conv {16 * width}@5x5, "
        f"dense {120 * width}, {84 * width}, {num_classes}, ReLU",
        layers=(
            Conv2D("conv1", 6 * width, 5),
            ReLU("relu1"),
            MaxPool2D("pool1", 2),
            Conv2D("conv2", 16 * width, 5),
            ReLU("relu2"),
            MaxPool2D("pool2", 2),
            Flatten("flatten"),
            Dense("fc1", 120 * width),
            ReLU("relu3"),
            Dense("fc2", 84 * width),
            ReLU("relu4"),
            Dense("fc3", num_classes),
        ),
    )


def with_dropout(spec: ModelSpec, rate: float) -> ModelSpec:
    """Return `spec` with Dropout(`rate`) after the activation of every hidden dense layer.

    A hidden dense layer is any Dense but the last layer (the logits). The dropout layer goes after
    the ReLU that follows the dense layer, or right after the dense layer when no ReLU follows. The
    parameters and their names are unchanged, so canonical weights move freely between the two specs.
    """
    check_float("with_dropout", "rate", rate, 0.0, 1.0, max_inclusive=False)
    layers = list(spec.layers)
    result: list[Layer] = []
    for index, layer in enumerate(layers):
        result.append(layer)
        previous = layers[index - 1] if index else None
        following = layers[index + 1] if index + 1 < len(layers) else None
        hidden_dense = isinstance(layer, Dense) and following is not None
        if hidden_dense and not isinstance(following, ReLU):
            result.append(Dropout(f"dropout_{layer.name}", rate))
        elif isinstance(layer, ReLU) and isinstance(previous, Dense) and following is not None:
            result.append(Dropout(f"dropout_{previous.name}", rate))
    return ModelSpec(
        name=spec.name,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        layers=tuple(result),
        description=f"{spec.description}; dropout {rate} after hidden dense layers",
    )


def without_dropout(spec: ModelSpec) -> ModelSpec:
    """Return `spec` without its Dropout layers (they are the identity at inference)."""
    return ModelSpec(
        name=spec.name,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        layers=tuple(layer for layer in spec.layers if not isinstance(layer, Dropout)),
        description=spec.description.split("; dropout ")[0],
    )


MODELS = {"lenet5": lenet5, "lenet5-wide": lenet5_wide}


def get_model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    return MODELS[name]()
