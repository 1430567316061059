"""Compute kernels: ``cpu`` holds the Numba ``@njit`` kernels, one module per concept."""
