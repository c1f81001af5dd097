"""The shared numpy augmentation: draw ranges, exact pixel geometry, determinism and the train-step path."""

import logging

import numpy as np
import pytest

from bench.augment import AugmentDraws, apply, augment_epoch, draw
from bench.backend import InputRange
from bench.data import DATASETS
from bench.spec import TrainRecipe, lenet5
from bench.spec.strategy import AugmentParams, TrainParams
from bench.steps import CellState, _augmentation
from tests.fake_backends import LinearBackend

SIDE = 32
FILL = -0.5
NO_AUGMENTATION = AugmentParams(crop_padding=0, rotation_degrees=0.0, translation=0.0, horizontal_flip=False)


def random_images(count: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 1, SIDE, SIDE)).astype(np.float32)


def fixed_draws(count: int, crop_rows=0, crop_columns=0, flipped=False) -> AugmentDraws:
    """Draws with no rotation or translation: only an integer crop shift and an optional flip."""
    return AugmentDraws(
        angle_degrees=np.zeros(count),
        crop_rows=np.full(count, crop_rows, dtype=np.int64),
        crop_columns=np.full(count, crop_columns, dtype=np.int64),
        shift_rows=np.zeros(count),
        shift_columns=np.zeros(count),
        flipped=np.full(count, flipped, dtype=bool),
    )


def fake_state(images: np.ndarray, hflip_preserves_label: bool, input_range=InputRange(-0.5, 2.5)) -> CellState:
    labels = np.arange(len(images), dtype=np.int64) % 10
    return CellState(
        cell_id="augment-test",
        framework="fake",
        backend=LinearBackend(),
        spec=lenet5(),
        model=None,
        recipe=TrainRecipe(seed=7, epochs=2, batch_size=4),
        train_images=images,
        train_labels=labels,
        dataset_key="synthetic",
        input_range=input_range,
        hflip_preserves_label=hflip_preserves_label,
    )


# --- draws -----------------------------------------------------------------------------------------


def test_draws_within_ranges():
    params = AugmentParams(crop_padding=3, rotation_degrees=15.0, translation=0.1, horizontal_flip=True)
    draws = draw(params, 5000, SIDE, 28, True, np.random.default_rng(0))

    assert np.all(np.abs(draws.angle_degrees) <= 15.0)
    assert np.all(np.abs(draws.shift_rows) <= 0.1 * SIDE)
    assert np.all(np.abs(draws.shift_columns) <= 0.1 * 28)
    for shifts in (draws.crop_rows, draws.crop_columns):
        assert np.issubdtype(shifts.dtype, np.integer)
        assert set(np.unique(shifts).tolist()) == {-3, -2, -1, 0, 1, 2, 3}


def test_draws_use_the_whole_range():
    params = AugmentParams(crop_padding=2, rotation_degrees=10.0, translation=0.05)
    draws = draw(params, 5000, SIDE, SIDE, True, np.random.default_rng(1))

    assert draws.angle_degrees.min() < -9.0
    assert draws.angle_degrees.max() > 9.0
    assert np.abs(draws.shift_rows).max() > 0.9 * 0.05 * SIDE


def test_draws_have_one_value_per_image():
    draws = draw(AugmentParams(), 37, SIDE, SIDE, True, np.random.default_rng(2))
    for values in (
        draws.angle_degrees,
        draws.crop_rows,
        draws.crop_columns,
        draws.shift_rows,
        draws.shift_columns,
        draws.flipped,
    ):
        assert values.shape == (37,)
    assert draws.flipped.dtype == bool


@pytest.mark.parametrize(
    ("params", "flip"),
    [
        (AugmentParams(horizontal_flip=True), False),
        (AugmentParams(horizontal_flip=False), True),
        (AugmentParams(horizontal_flip=False), False),
    ],
)
def test_flips_never_drawn_when_off(params, flip):
    draws = draw(params, 2000, SIDE, SIDE, flip, np.random.default_rng(3))
    assert not draws.flipped.any()


def test_flips_drawn_about_half_the_time():
    draws = draw(AugmentParams(horizontal_flip=True), 4000, SIDE, SIDE, True, np.random.default_rng(4))
    assert 0.45 < draws.flipped.mean() < 0.55


def test_datasets_declare_flip_preservation():
    assert DATASETS["digits"].hflip_preserves_label is False
    assert DATASETS["mnist"].hflip_preserves_label is False
    assert DATASETS["fashion-mnist"].hflip_preserves_label is True


# --- geometry --------------------------------------------------------------------------------------


def test_zero_parameters_return_images_unchanged():
    images = random_images()
    augmented, draws = augment_epoch(images, NO_AUGMENTATION, seed=0, epoch=0, flip=True, fill=FILL)

    np.testing.assert_array_equal(augmented, images)
    assert not draws.flipped.any()


def test_integer_crop_shift_is_exact():
    images = random_images(4)
    shifted = apply(images, fixed_draws(4, crop_rows=1, crop_columns=-2), FILL)

    # An output pixel (r, c) samples the input at (r - 1, c + 2).
    np.testing.assert_array_equal(shifted[:, :, 1:, : SIDE - 2], images[:, :, : SIDE - 1, 2:])
    assert np.all(shifted[:, :, 0, :] == FILL)
    assert np.all(shifted[:, :, :, SIDE - 2 :] == FILL)


def test_crop_shift_fill_enters_from_edge():
    images = np.ones((2, 1, SIDE, SIDE), np.float32)
    shifted = apply(images, fixed_draws(2, crop_rows=-3, crop_columns=2), FILL)

    # Rows move up by 3, so the bottom 3 rows come from outside the image.
    # Columns move right by 2, so the left 2 columns come from outside the image.
    assert np.all(shifted[:, :, SIDE - 3 :, :] == FILL)
    assert np.all(shifted[:, :, :, :2] == FILL)
    assert np.all(shifted[:, :, : SIDE - 3, 2:] == 1.0)


def test_flip_alone_mirrors_columns():
    images = random_images(3)
    flipped = apply(images, fixed_draws(3, flipped=True), FILL)
    np.testing.assert_array_equal(flipped, images[:, :, :, ::-1])


def test_flip_applies_per_image():
    images = random_images(2)
    draws = fixed_draws(2)
    draws.flipped[1] = True
    result = apply(images, draws, FILL)

    np.testing.assert_array_equal(result[0], images[0])
    np.testing.assert_array_equal(result[1], images[1, :, :, ::-1])


def test_rotation_by_180_degrees_turns_image():
    images = random_images(2)
    draws = fixed_draws(2)
    draws.angle_degrees[:] = 180.0
    rotated = apply(images, draws, FILL)
    np.testing.assert_allclose(rotated, images[:, :, ::-1, ::-1], atol=1e-5)


def test_apply_keeps_channels_separate():
    rng = np.random.default_rng(5)
    images = rng.standard_normal((3, 2, SIDE, SIDE)).astype(np.float32)
    shifted = apply(images, fixed_draws(3, crop_rows=2), FILL)
    for channel in range(2):
        np.testing.assert_array_equal(shifted[:, channel, 2:], images[:, channel, :-2])


def test_apply_rejects_three_dimensional_images():
    with pytest.raises(ValueError, match="N, C, H, W"):
        apply(np.zeros((4, SIDE, SIDE), np.float32), fixed_draws(4), FILL)


# --- determinism, shape and dtype ------------------------------------------------------------------


def test_same_seed_and_epoch_give_identical_output():
    images = random_images()
    first, first_draws = augment_epoch(images, AugmentParams(), seed=3, epoch=2, flip=True, fill=FILL)
    again, again_draws = augment_epoch(images, AugmentParams(), seed=3, epoch=2, flip=True, fill=FILL)

    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_draws.angle_degrees, again_draws.angle_degrees)


def test_other_epoch_or_seed_differs():
    images = random_images()
    first, _ = augment_epoch(images, AugmentParams(), seed=3, epoch=2, flip=True, fill=FILL)
    next_epoch, _ = augment_epoch(images, AugmentParams(), seed=3, epoch=3, flip=True, fill=FILL)
    other_seed, _ = augment_epoch(images, AugmentParams(), seed=4, epoch=2, flip=True, fill=FILL)

    assert not np.array_equal(first, next_epoch)
    assert not np.array_equal(first, other_seed)


def test_augment_epoch_leaves_input_unchanged():
    images = random_images()
    copy = images.copy()
    augment_epoch(images, AugmentParams(), seed=0, epoch=0, flip=True, fill=FILL)
    np.testing.assert_array_equal(images, copy)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_shape_and_dtype(dtype):
    images = random_images(5).astype(dtype)
    augmented, _ = augment_epoch(images, AugmentParams(), seed=0, epoch=0, flip=True, fill=FILL)

    assert augmented.shape == (5, 1, SIDE, SIDE)
    assert augmented.dtype == np.float32


def test_output_stays_within_input_and_fill_range():
    images = np.random.default_rng(6).uniform(0.0, 1.0, (64, 1, SIDE, SIDE)).astype(np.float32)
    augmented, _ = augment_epoch(images, AugmentParams(), seed=0, epoch=0, flip=True, fill=0.0)

    # Bilinear sampling mixes neighbouring pixels and the fill, so it cannot leave their range.
    assert augmented.min() >= 0.0
    assert augmented.max() <= 1.0 + 1e-6


# --- the train step's augmentation -----------------------------------------------------------------


def test_strategy_path_keeps_count_and_labels():
    images = random_images(12)
    state = fake_state(images, hflip_preserves_label=True)
    labels = state.train_labels.copy()
    images_for_epoch, _ = _augmentation(state, TrainParams(augment=AugmentParams()))

    for epoch in range(2):
        augmented = images_for_epoch(epoch)
        assert augmented.shape == images.shape
        assert len(augmented) == len(state.train_labels)
    np.testing.assert_array_equal(state.train_labels, labels)
    np.testing.assert_array_equal(state.train_images, images)


def test_strategy_path_keeps_image_order():
    images = random_images(12)
    state = fake_state(images, hflip_preserves_label=True)
    identity, _ = _augmentation(state, TrainParams(augment=NO_AUGMENTATION))
    np.testing.assert_array_equal(identity(0), images)

    flip_only = AugmentParams(crop_padding=0, rotation_degrees=0.0, translation=0.0, horizontal_flip=True)
    images_for_epoch, _ = _augmentation(state, TrainParams(augment=flip_only))
    augmented = images_for_epoch(0)
    for index in range(len(images)):
        mirrored = images[index, :, :, ::-1]
        assert np.array_equal(augmented[index], images[index]) or np.array_equal(augmented[index], mirrored), index


def test_strategy_path_uses_run_seed_and_background_fill():
    images = np.full((8, 1, SIDE, SIDE), 2.5, np.float32)
    state = fake_state(images, hflip_preserves_label=False, input_range=InputRange(-0.4, 2.5))
    crop_only = AugmentParams(crop_padding=2, rotation_degrees=0.0, translation=0.0, horizontal_flip=False)
    images_for_epoch, _ = _augmentation(state, TrainParams(augment=crop_only))

    augmented = images_for_epoch(1)
    expected, _ = augment_epoch(images, crop_only, seed=state.recipe.seed, epoch=1, flip=False, fill=-0.4)
    np.testing.assert_array_equal(augmented, expected)
    assert set(np.unique(augmented).tolist()) <= {np.float32(-0.4), np.float32(2.5)}
    assert np.any(augmented == np.float32(-0.4))


def test_strategy_path_flip_off_for_digits():
    images = random_images(200)
    state = fake_state(images, hflip_preserves_label=DATASETS["digits"].hflip_preserves_label)
    flip_only = AugmentParams(crop_padding=0, rotation_degrees=0.0, translation=0.0, horizontal_flip=True)
    images_for_epoch, record = _augmentation(state, TrainParams(augment=flip_only))

    assert record["horizontal_flip"].startswith("off")
    assert "label-preserving" in record["horizontal_flip"]
    np.testing.assert_array_equal(images_for_epoch(0), images)


def test_strategy_path_flip_on_for_fashion():
    images = random_images(200)
    state = fake_state(images, hflip_preserves_label=DATASETS["fashion-mnist"].hflip_preserves_label)
    flip_only = AugmentParams(crop_padding=0, rotation_degrees=0.0, translation=0.0, horizontal_flip=True)
    images_for_epoch, record = _augmentation(state, TrainParams(augment=flip_only))

    assert record["horizontal_flip"] == "on"
    assert not np.array_equal(images_for_epoch(0), images)


def test_strategy_path_flip_not_requested():
    state = fake_state(random_images(4), hflip_preserves_label=True)
    no_flip = AugmentParams(horizontal_flip=False)
    _, record = _augmentation(state, TrainParams(augment=no_flip))
    assert record["horizontal_flip"] == "off"


def test_strategy_path_logs_flip_note(caplog):
    state = fake_state(random_images(4), hflip_preserves_label=False)
    with caplog.at_level(logging.INFO, logger="bench.steps"):
        _augmentation(state, TrainParams(augment=AugmentParams()))
    assert "horizontal flip off" in caplog.text


def test_strategy_path_needs_input_range():
    state = fake_state(random_images(4), hflip_preserves_label=True, input_range=None)
    with pytest.raises(ValueError, match="input range"):
        _augmentation(state, TrainParams(augment=AugmentParams()))
