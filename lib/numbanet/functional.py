"""The raw operations behind the layers, for the book and the exercises.

Each forward function has a matching ``*_backward``; the layer classes in
``numbanet.nn`` are thin stateful wrappers around these.
"""
from .conv import (conv2d, conv2d_backward, conv2d_backward_input, conv2d_backward_weight,
                   conv2d_output_size)
from .linear import flatten, linear, linear_backward
from .loss import cross_entropy, cross_entropy_backward, mse_loss, mse_loss_backward
from .pooling import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward, avg_pool2d, avg_pool2d_backward,
                      lp_pool2d, lp_pool2d_backward, max_pool2d, max_pool2d_backward)
from .activation import (dice, dice_backward, elu, elu_backward, gelu, gelu_backward, leaky_relu,
                         leaky_relu_backward, mish, mish_backward, relu, relu_backward, selu, selu_backward,
                         sigmoid, sigmoid_backward, silu, silu_backward, swish, swish_backward, tanh,
                         tanh_backward)
from .dropout import dropout, dropout2d, dropout_backward
from .norm import (batch_norm, batch_norm_backward, group_norm, group_norm_backward, instance_norm,
                   instance_norm_backward, layer_norm, layer_norm_backward, local_response_norm,
                   local_response_norm_backward)
