"""Framework-neutral compression transforms on canonical weights, in plain numpy.

Unstructured pruning (masks), structured pruning (structured), low-rank factorization (lowrank) and a
reference forward pass (reference) that checks them without PyTorch or TensorFlow.
"""

from bench.compress.lowrank import energy_fraction, factorize, select_rank, truncated_svd_factors
from bench.compress.masks import (
    apply_masks,
    global_magnitude_masks,
    polynomial_sparsity,
    prunable_kernels,
    pruned_count,
    sparsity_report,
)
from bench.compress.reference import forward
from bench.compress.structured import prune_structured, structured_prune_targets

__all__ = [
    "apply_masks",
    "energy_fraction",
    "factorize",
    "forward",
    "global_magnitude_masks",
    "polynomial_sparsity",
    "prunable_kernels",
    "prune_structured",
    "pruned_count",
    "select_rank",
    "sparsity_report",
    "structured_prune_targets",
    "truncated_svd_factors",
]
