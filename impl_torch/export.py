"""ONNX export of torch models with the torch.export-based exporter (opset 18, dynamic batch)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from bench.spec import ModelSpec

log = logging.getLogger(__name__)

OPSET = 18


def export_onnx(model: nn.Module, spec: ModelSpec, path: Path) -> None:
    model.eval()
    example = torch.zeros((2, *spec.input_shape), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["input"],
        output_names=["logits"],
        opset_version=OPSET,
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))
    log.debug("exported %s to %s", spec.name, path)
