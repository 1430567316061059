"""Shared helpers for the oracle tests: comparisons against PyTorch and tolerances."""
from __future__ import annotations

import numpy as np
import torch

# The bar: relative error <= 1e-10 in float64 and <= 1e-5 in float32.
TOLERANCE = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-5}
TORCH_DTYPE = {np.dtype(np.float64): torch.float64, np.dtype(np.float32): torch.float32}

torch.set_num_threads(1)


def rel_error(ours, reference) -> float:
    """max|ours − reference| / max(max|reference|, 1): the error relative to the result's scale."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    assert ours.shape == reference.shape, f"shape: expected {reference.shape}, got {ours.shape}"
    if ours.size == 0:
        return 0.0
    return float(np.max(np.abs(ours - reference)) / max(np.max(np.abs(reference)), 1.0))


def assert_close(ours, reference, dtype, what: str = "", factor: float = 1.0) -> None:
    """Assert ``rel_error(ours, reference) <= factor * TOLERANCE[dtype]`` with a readable message."""
    if isinstance(reference, torch.Tensor):
        reference = reference.detach().numpy()
    tol = factor * TOLERANCE[np.dtype(dtype)]
    err = rel_error(ours, reference)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:.1e} (dtype {np.dtype(dtype)})"


def tensor(array: np.ndarray, requires_grad: bool = True) -> torch.Tensor:
    """A torch leaf tensor holding a copy of ``array`` (same dtype)."""
    return torch.tensor(np.array(array), requires_grad=requires_grad)


def load_torch_weights(torch_module: torch.nn.Module, our_module) -> None:
    """Copy our parameters and buffers into a torch module with the same names."""
    state = {k: torch.tensor(v) for k, v in our_module.state_dict().items()}
    missing, unexpected = torch_module.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected]
    assert not unexpected, f"torch module lacks {unexpected}"
    assert all(k.endswith("num_batches_tracked") for k in missing), f"we lack {missing}"
