"""The PyTorch backend of twinbench."""
