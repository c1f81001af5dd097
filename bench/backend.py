"""The framework-neutral Backend contract that impl_torch and impl_tf implement.

Arrays crossing this boundary are numpy: images are float32 (N, C, H, W) in the canonical layout, labels
int64 (N,), logits float32 (N, num_classes), weights bench.spec.Weights. A backend converts to its native
layout inside its own methods. This module imports no framework, so the harness runs without either.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bench.spec import ModelSpec, TrainRecipe, Weights

# Import paths of the real backends, by framework name. Tests add fake backends by import path.
BACKENDS = {
    "torch": "impl_torch.backend:TorchBackend",
    "tf": "impl_tf.backend:TFBackend",
}


@dataclass
class EpochReport:
    """Loss and timing of one finished training epoch, passed to the caller's callback."""

    epoch: int
    epochs: int
    loss: float
    seconds: float
    samples: int


@dataclass
class TrainData:
    """Training arrays plus the per-epoch batch order shared by both backends.

    `images_for_epoch`, when set, returns the images of an epoch (augmented copies of `images`, same
    shape and order); backends train on those instead of `images`. `teacher_logits` (N, classes) are
    the distillation teacher's logits for `images`, gathered by the same batch indices.
    """

    images: np.ndarray
    labels: np.ndarray
    batch_order: Callable[[int], Iterator[np.ndarray]]  # epoch -> index arrays, one per batch
    images_for_epoch: Callable[[int], np.ndarray] | None = None
    teacher_logits: np.ndarray | None = None


@dataclass(frozen=True)
class InputRange:
    """The normalized values of the [0, 1] pixel range: `low` is pixel 0, `high` is pixel 1.

    Attack budgets are in pixel units; a backend multiplies them by `scale` to get input units and
    clips adversarial inputs to [low, high].
    """

    low: float
    high: float

    @property
    def scale(self) -> float:
        return self.high - self.low

    @classmethod
    def from_normalization(cls, mean: float, std: float) -> "InputRange":
        return cls(low=(0.0 - mean) / std, high=(1.0 - mean) / std)


@dataclass(frozen=True)
class TrainOptions:
    """Additions to plain cross-entropy SGD for one training run (bench.spec.strategy.TrainParams).

    `l2` adds lambda * w to the gradient of every conv and dense kernel (biases exempt). With
    `adversarial`, each step's loss is (1 - ratio) * CE(clean) + ratio * CE(adversarial), the
    adversarial batch crafted by `attack` semantics against the current weights. With `distill`, the
    loss is the distillation loss against `TrainData.teacher_logits`. Reported epoch losses are the
    data loss without the L2 penalty, so both frameworks report the same number.
    """

    l2: float = 0.0
    adversarial: Any = None  # bench.spec.strategy.AdversarialParams
    distill: Any = None  # bench.spec.strategy.DistillParams
    input_range: InputRange | None = None  # needed by adversarial training


# Called at the start of every epoch with the 0-based epoch; returns canonical masks ("layer.weight" ->
# bool array, True = keep) to apply from then on and after every optimizer step, or None to keep the
# current ones.
MasksForEpoch = Callable[[int], "dict[str, np.ndarray] | None"]


@dataclass
class TrainResult:
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    samples_per_epoch: int = 0


@dataclass
class NativeRuntime:
    """A framework's own inference path, split so that timing covers `run` alone.

    `prepare` converts canonical numpy images to the framework's input once, outside the timed loop.
    `run` is the inference call that is timed, and `to_numpy` converts its output for comparison.
    """

    prepare: Callable[[np.ndarray], Any]
    run: Callable[[Any], Any]
    to_numpy: Callable[[Any], np.ndarray]
    description: str = ""
    setup_seconds: float | None = None  # one-time cost before the first call (session creation, ...)
    # Compile or trace seconds per batch size, filled by `prepare` for runtimes that compile per input
    # shape (torch.compile, XLA). Kept apart from the first call and from steady-state latency.
    compile_seconds: dict[int, float] | None = None
    # Why this runtime cannot run on this machine (no GPU, no C++ compiler), or None. An unavailable
    # runtime is recorded as skipped with this reason and never called.
    unavailable: str | None = None


def unavailable_runtime(description: str, reason: str) -> NativeRuntime:
    """Return a runtime that does not apply on this machine; the cell records it as skipped with `reason`."""

    def not_callable(*_args: Any) -> Any:
        raise RuntimeError(f"runtime is unavailable: {reason}")

    return NativeRuntime(not_callable, not_callable, not_callable, description, unavailable=reason)


@dataclass
class NativeInt8:
    """A framework's own int8 model: its runtime, serialized size and which layers run in int8."""

    runtime_name: str
    runtime: NativeRuntime
    size_bytes: int  # the serialized quantized model in artifacts_dir
    coverage: dict[str, Any]
    description: str
    setup_seconds: float  # conversion time: export, calibration, compile or flatbuffer writing


def native_int8(
    runtime_name: str,
    prepare: Callable[[np.ndarray], Any],
    run: Callable[[Any], Any],
    to_numpy: Callable[[Any], np.ndarray],
    description: str,
    setup_seconds: float,
    model_path: Path,
    coverage: dict[str, Any],
) -> NativeInt8:
    """Wrap a framework's quantized model and its inference functions as a NativeInt8."""
    runtime = NativeRuntime(prepare, run, to_numpy, description, setup_seconds)
    return NativeInt8(runtime_name, runtime, model_path.stat().st_size, coverage, description, setup_seconds)


def check_calibration_images(spec: ModelSpec, images: np.ndarray) -> np.ndarray:
    """Return calibration images as contiguous float32 (N, C, H, W), or raise naming what is wrong."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"calibration_images must be a numpy array, got {type(images).__name__}")
    expected = tuple(spec.input_shape)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or len(images) == 0:
        raise ValueError(
            f"calibration_images must have shape (N >= 1, {', '.join(map(str, expected))}) "
            f"in the canonical NCHW layout, got {images.shape}"
        )
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"calibration_images must be floating point (float32), got {images.dtype}")
    return np.ascontiguousarray(images, dtype=np.float32)


@runtime_checkable
class Backend(Protocol):
    """One framework's implementation of the steps a strategy is made of."""

    name: str

    def configure(self, threads: int, seed: int) -> dict[str, Any]:
        """Fix thread counts and seeds before anything else; return the settings actually in force."""

    def versions(self) -> dict[str, str]:
        """Library versions that matter for this backend's numbers."""

    def build(self, spec: ModelSpec) -> Any:
        """Build an untrained model for `spec`; the returned handle is opaque to the harness."""

    def set_weights(self, model: Any, spec: ModelSpec, weights: Weights) -> None:
        """Load canonical weights into `model`."""

    def get_weights(self, model: Any, spec: ModelSpec) -> Weights:
        """Export `model`'s weights in the canonical layout."""

    def count_parameters(self, model: Any) -> int:
        """Scalars the framework itself reports as the model's parameters."""

    def train(
        self,
        model: Any,
        spec: ModelSpec,
        recipe: TrainRecipe,
        data: TrainData,
        on_epoch: Callable[[EpochReport], None],
        masks_for_epoch: MasksForEpoch | None = None,
        options: TrainOptions | None = None,
    ) -> TrainResult:
        """Train in place with `recipe`, visiting batches in `data.batch_order(epoch)`.

        With `masks_for_epoch`, masked weights are zero from the start of each epoch that returns masks
        and stay zero through every optimizer step. The masks are folded into the weights at the end.
        `options` adds L2, adversarial batches or distillation (see TrainOptions).
        """

    def attack(
        self, model: Any, images: np.ndarray, labels: np.ndarray, attack: Any, input_range: InputRange
    ) -> np.ndarray:
        """Return adversarial copies of canonical `images` under `attack` (bench.spec.strategy.AttackParams).

        Each step adds step_size * scale * sign(input gradient of the mean cross-entropy), then clips
        to the epsilon * scale ball around the clean images and to [low, high]. Inference mode.
        """

    def distillation_loss(
        self, student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray, distill: Any
    ) -> float:
        """Compute the batch-mean distillation loss of DistillParams `distill` on given logits (parity checks)."""

    def predict(self, model: Any, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Return logits for canonical (N, C, H, W) float32 images, in inference mode."""

    def export_onnx(self, model: Any, spec: ModelSpec, path: Path) -> None:
        """Write an ONNX model (opset 18) with input "input" (batch, C, H, W) and output "logits"."""

    def runtimes(self, model: Any, spec: ModelSpec) -> dict[str, NativeRuntime]:
        """Native inference paths by runtime name ("torch-eager", "tf-function", ...), for timing."""


def load_backend(framework: str, import_path: str | None = None) -> Backend:
    """Import and instantiate the backend for `framework`, or the class at `import_path`."""
    path = import_path or BACKENDS.get(framework)
    if path is None:
        raise ValueError(f"unknown framework {framework!r}; valid frameworks: {', '.join(BACKENDS)}")
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        extra = {"torch": "torch", "tf": "tf"}.get(framework, "all")
        raise ImportError(
            f"backend {framework!r} could not be imported ({error}); install the extra with "
            f"`pip install 'twinbench[{extra}]'` (in a checkout: `pip install -e '.[{extra}]'`)"
        ) from error
    return getattr(module, class_name)()
