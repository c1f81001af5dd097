"""One numpy augmentation shared by both frameworks (the `augment` strategy).

torchvision's and Keras's random transforms draw from different generators and interpolate
differently, so they could never give both frameworks the same images. Instead each epoch's
augmented training set is computed here, from the run seed and the epoch, and handed to both
backends: the torch and tf rows of `augment` train on identical pixels in an identical order.

The geometry (bench.spec.strategy.AugmentParams) is one affine map per image, sampled bilinearly
with scipy.ndimage.map_coordinates; pixels from outside the image take the background value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bench.spec.strategy import AugmentParams

# Third entry of the generator seed, so that augmentation draws a stream separate from the epoch order.
AUGMENT_STREAM = 3
CHUNK = 2048


@dataclass(frozen=True)
class AugmentDraws:
    """The random values drawn for each image: degrees, pixel shifts and flips, shape (N,) each."""

    angle_degrees: np.ndarray
    crop_rows: np.ndarray  # integer shift from the random crop, in [-crop_padding, crop_padding]
    crop_columns: np.ndarray
    shift_rows: np.ndarray  # fractional translation in pixels, |shift| <= translation * side
    shift_columns: np.ndarray
    flipped: np.ndarray  # bool


def draw(params: AugmentParams, count: int, height: int, width: int, flip: bool, rng: np.random.Generator) -> AugmentDraws:
    """Draw the augmentation of `count` images. With `flip` false, no image is flipped."""
    padding = params.crop_padding
    return AugmentDraws(
        angle_degrees=rng.uniform(-params.rotation_degrees, params.rotation_degrees, count),
        crop_rows=rng.integers(-padding, padding + 1, count),
        crop_columns=rng.integers(-padding, padding + 1, count),
        shift_rows=rng.uniform(-params.translation, params.translation, count) * height,
        shift_columns=rng.uniform(-params.translation, params.translation, count) * width,
        flipped=(rng.random(count) < 0.5) if (flip and params.horizontal_flip) else np.zeros(count, bool),
    )


def apply(images: np.ndarray, draws: AugmentDraws, fill: float) -> np.ndarray:
    """Transform float images (N, C, H, W) by `draws`; out-of-image pixels become `fill`.

    An output pixel p samples the input at F(R(-angle) (p - centre - shift) + centre), where the
    shift is crop plus translation, R rotates about the image centre and F mirrors the columns of
    flipped images. With zero angle and integer shifts this is an exact pixel shift.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {images.shape}")
    count, channels, height, width = images.shape
    result = np.empty_like(images, dtype=np.float32)
    rows, columns = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    centre_row, centre_column = (height - 1) / 2, (width - 1) / 2
    for start in range(0, count, CHUNK):
        part = slice(start, min(start + CHUNK, count))
        angle = np.deg2rad(draws.angle_degrees[part])[:, None, None]
        cos, sin = np.cos(angle), np.sin(angle)
        row = rows[None] - centre_row - (draws.crop_rows[part] + draws.shift_rows[part])[:, None, None]
        column = columns[None] - centre_column - (draws.crop_columns[part] + draws.shift_columns[part])[:, None, None]
        source_row = cos * row + sin * column + centre_row
        source_column = -sin * row + cos * column + centre_column
        flipped = draws.flipped[part][:, None, None]
        source_column = np.where(flipped, (width - 1) - source_column, source_column)
        index = np.broadcast_to(np.arange(part.stop - part.start, dtype=np.float64)[:, None, None], source_row.shape)
        coordinates = np.stack([index, source_row, source_column])
        for channel in range(channels):
            result[part, channel] = ndimage.map_coordinates(
                images[part, channel], coordinates, order=1, mode="grid-constant", cval=fill, prefilter=False
            )
    return result


def augment_epoch(
    images: np.ndarray, params: AugmentParams, seed: int, epoch: int, flip: bool, fill: float
) -> tuple[np.ndarray, AugmentDraws]:
    """Augment a whole training set for one epoch, with draws from default_rng([seed, epoch, AUGMENT_STREAM])."""
    rng = np.random.default_rng([seed, epoch, AUGMENT_STREAM])
    draws = draw(params, len(images), images.shape[2], images.shape[3], flip, rng)
    return apply(images, draws, fill), draws
