"""nbgrader pipeline for a1_conv_forward (the checks are in pipeline.py); it also runs the attack students."""
from .pipeline import AttackChecks, Bug, PipelineTests, Substitute, pytestmark  # noqa: F401 - pytestmark applies nbgrader's warning filters


class TestA1ConvForward(AttackChecks, PipelineTests):
    assignment = "a1_conv_forward"
    bug = Bug(cell="conv2d_naive", pattern=r"\bstride\b", replacement="1",  # a convolution that ignores its stride
              passes=("test_conv2d_by_hand", "test_conv2d_stride1", "test_conv2d_padding"),
              fails=("test_conv2d_stride2_hidden", "test_conv2d_stride3_hidden", "test_conv2d_float32_hidden"))
    # numbanet's pieces by every route: a pure-Python helper, a layer's num_parameters(), F.conv2d after
    # reloading its kernel module and restoring the module's saved objects, F.conv2d bound before the test
    borrower = Substitute(code={
        "conv_output_size": "conv_output_size = lambda n, f, stride=1, padding=0: F.conv2d_output_size(n, n, f, stride, padding)[0]",
        "conv_param_count": ("conv_param_count = lambda in_channels, out_channels, kernel_size, bias=True: "
                             "nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias).num_parameters()"),
        "conv2d_naive": ("import importlib\n"
                         "_kernels = importlib.import_module('numbanet.kernels.cpu.conv')\n"
                         "_saved = dict(vars(_kernels))\n"
                         "def conv2d_naive(x, w, b, stride=1, padding=0):\n"
                         "    importlib.reload(_kernels)\n"
                         "    vars(_kernels).update(_saved)\n"
                         "    return F.conv2d(x, w, b, stride=stride, padding=padding)"),
        "conv1x1": "_conv2d = F.conv2d\nconv1x1 = lambda x, w, b: _conv2d(x, w, b)"},
        fails=("test_conv_output_size", "test_conv_output_size_hidden", "test_conv_param_count",
               "test_conv_param_count_hidden", "test_conv2d_by_hand", "test_conv2d_stride1", "test_conv2d_padding",
               "test_conv2d_stride2_hidden", "test_conv2d_stride3_hidden", "test_conv2d_float32_hidden",
               "test_conv1x1", "test_conv1x1_hidden"))
