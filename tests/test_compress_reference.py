import subprocess
import sys

import numpy as np
import pytest

from bench.compress import forward
from bench.spec import initial_weights, lenet5
from bench.spec.model import Conv2D, Dense, Dropout, Flatten, MaxPool2D, ModelSpec, ReLU
from tests.frameworks import needs_torch


def _random_weights(spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in spec.parameter_shapes().items()}


def _images(spec: ModelSpec, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count,) + tuple(spec.input_shape)).astype(np.float32)


def _naive_conv(images, kernel, bias, stride, padding):
    batch, _, height, width = images.shape
    out_channels, in_channels, size, _ = kernel.shape
    padded = np.pad(images.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out_h = (height + 2 * padding - size) // stride + 1
    out_w = (width + 2 * padding - size) // stride + 1
    output = np.zeros((batch, out_channels, out_h, out_w))
    for n in range(batch):
        for o in range(out_channels):
            for y in range(out_h):
                for x in range(out_w):
                    patch = padded[n, :, y * stride : y * stride + size, x * stride : x * stride + size]
                    output[n, o, y, x] = np.sum(patch * kernel[o]) + bias[o]
    return output


def test_forward_conv_matches_naive_loops():
    spec = ModelSpec(
        name="conv-only",
        input_shape=(3, 7, 6),
        num_classes=4 * 4 * 3,
        layers=(Conv2D("conv", 4, 3, stride=2, padding=1), Flatten("flatten")),
    )
    weights = _random_weights(spec, 0)
    images = _images(spec, 2, 1)

    expected = _naive_conv(images, weights["conv.weight"], weights["conv.bias"], stride=2, padding=1)
    logits = forward(spec, weights, images)

    assert logits.shape == (2, 48)
    np.testing.assert_allclose(logits, expected.reshape(2, -1), rtol=1e-5, atol=1e-5)


def test_forward_conv_without_bias():
    spec = ModelSpec(
        name="conv-no-bias",
        input_shape=(2, 5, 5),
        num_classes=3 * 3 * 3,
        layers=(Conv2D("conv", 3, 3, bias=False), Flatten("flatten")),
    )
    weights = _random_weights(spec, 2)
    images = _images(spec, 2, 3)

    expected = _naive_conv(images, weights["conv.weight"], np.zeros(3), stride=1, padding=0)

    np.testing.assert_allclose(forward(spec, weights, images), expected.reshape(2, -1), rtol=1e-5, atol=1e-5)


def test_forward_max_pool_floor_mode():
    spec = ModelSpec(
        name="pool-only",
        input_shape=(1, 5, 5),
        num_classes=4,
        layers=(MaxPool2D("pool", 2), Flatten("flatten")),
    )
    images = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)

    logits = forward(spec, {}, images)

    # The last row and column do not fill a 2x2 window and are dropped.
    np.testing.assert_array_equal(logits, [[6, 8, 16, 18]])


def test_forward_flatten_channel_major():
    spec = ModelSpec(
        name="flatten-identity",
        input_shape=(2, 2, 3),
        num_classes=12,
        layers=(Flatten("flatten"), Dense("fc", 12)),
    )
    weights = {"fc.weight": np.eye(12, dtype=np.float32), "fc.bias": np.zeros(12, dtype=np.float32)}
    images = _images(spec, 1, 4)

    logits = forward(spec, weights, images)

    for c in range(2):
        for h in range(2):
            for w in range(3):
                assert logits[0, c * 6 + h * 3 + w] == images[0, c, h, w]


def test_forward_dense_relu_dropout():
    spec = ModelSpec(
        name="mlp",
        input_shape=(1, 2, 2),
        num_classes=2,
        layers=(Flatten("flatten"), Dense("fc1", 3), ReLU("relu"), Dropout("drop", 0.5), Dense("fc2", 2, bias=False)),
    )
    weights = _random_weights(spec, 5)
    images = _images(spec, 3, 6)

    hidden = images.reshape(3, -1).astype(np.float64) @ weights["fc1.weight"].T + weights["fc1.bias"]
    expected = np.maximum(hidden, 0.0) @ weights["fc2.weight"].T

    np.testing.assert_allclose(forward(spec, weights, images), expected, rtol=1e-5, atol=1e-6)


def test_forward_returns_float32():
    spec = lenet5()
    logits = forward(spec, initial_weights(spec, 0), _images(spec, 2, 0))

    assert logits.dtype == np.float32
    assert logits.shape == (2, 10)


def test_forward_rejects_wrong_image_shape():
    spec = lenet5()
    weights = initial_weights(spec, 0)

    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 32, 32\)"):
        forward(spec, weights, np.zeros((2, 1, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="images must have shape"):
        forward(spec, weights, np.zeros((1, 32, 32), dtype=np.float32))


def test_forward_rejects_mismatched_weights():
    spec = lenet5()
    weights = initial_weights(spec, 0)
    del weights["fc3.bias"]

    with pytest.raises(ValueError, match="missing"):
        forward(spec, weights, _images(spec, 1, 0))


def test_compress_imports_no_framework():
    code = (
        "import sys, bench.compress; "
        "loaded = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; "
        "sys.exit(f'frameworks imported: {loaded}' if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr


@needs_torch
@pytest.mark.torch
def test_forward_matches_torch_functional():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    spec = ModelSpec(
        name="strided",
        input_shape=(3, 12, 12),
        num_classes=5,
        layers=(
            Conv2D("conv1", 4, 3, stride=2, padding=1),
            ReLU("relu1"),
            MaxPool2D("pool1", 2),
            Conv2D("conv2", 6, 1, bias=False),
            Flatten("flatten"),
            Dense("fc", 5),
        ),
    )
    weights = _random_weights(spec, 7)
    images = _images(spec, 4, 8)

    tensor = {name: torch.from_numpy(value).double() for name, value in weights.items()}
    x = torch.from_numpy(images).double()
    x = functional.conv2d(x, tensor["conv1.weight"], tensor["conv1.bias"], stride=2, padding=1)
    x = functional.max_pool2d(functional.relu(x), 2)
    x = functional.conv2d(x, tensor["conv2.weight"])
    x = functional.linear(torch.flatten(x, 1), tensor["fc.weight"], tensor["fc.bias"])

    np.testing.assert_allclose(forward(spec, weights, images), x.numpy(), rtol=1e-5, atol=1e-5)
