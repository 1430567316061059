"""The raw operations behind the layers, for the book and the exercises.

Each forward function has a matching ``*_backward``; the layer classes in
``numbanet.nn`` are thin stateful wrappers around these.
"""
from .conv import (conv2d, conv2d_backward, conv2d_backward_input, conv2d_backward_weight,
                   conv2d_output_size)
