"""Skip markers for tests that need a framework installed (the harness tests need neither)."""

import importlib.util

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TF = importlib.util.find_spec("tensorflow") is not None

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed: pip install -e '.[torch]'")
needs_tf = pytest.mark.skipif(not HAS_TF, reason="TensorFlow is not installed: pip install -e '.[tf]'")
needs_both = pytest.mark.skipif(
    not (HAS_TORCH and HAS_TF), reason="needs PyTorch and TensorFlow: pip install -e '.[all]'"
)
