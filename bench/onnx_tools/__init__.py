"""Tools for exported ONNX models: MAC counts per sample and int8 static quantization with ONNX Runtime."""

from bench.onnx_tools.macs import count_macs, theoretical_speedup
from bench.onnx_tools.quantize import (
    ImageCalibrationReader,
    int8_runtime,
    quantize_onnx_static,
    weight_quantization_coverage,
)

__all__ = [
    "ImageCalibrationReader",
    "count_macs",
    "int8_runtime",
    "quantize_onnx_static",
    "theoretical_speedup",
    "weight_quantization_coverage",
]
