"""Regenerate ``torch_block_op{11,17}.onnx``: real PyTorch (TorchScript exporter) ONNX exports.

They carry what real-world exports carry: a dynamic batch dim, BatchNormalization, Constant
nodes and Shape/Gather/Unsqueeze/Concat/Reshape arithmetic (``x.view(x.size(0), -1)``),
HardSwish (HardSigmoid*x at opset 11), Relu6 as Clip with min/max inputs, a depthwise conv,
Concat/Slice and Softmax. Needs torch; run from this folder.
"""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.b1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False)
        self.b2 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24 * 4 * 4, 10)

    def forward(self, x):
        x = nn.functional.hardswish(self.b1(self.c1(x)))
        x = nn.functional.relu6(self.b2(self.dw(x)))
        x = nn.functional.max_pool2d(self.pw(x), 2)
        x = torch.cat([x, x * 0.5], 1)[:, :24]
        x = x.view(x.size(0), -1)
        return torch.softmax(self.fc(x), -1)


def main():
    torch.manual_seed(0)
    m = Block().eval()
    for b in (m.b1, m.b2):  # non-trivial statistics so that BN folding is really tested
        b.running_mean.uniform_(-0.5, 0.5)
        b.running_var.uniform_(0.5, 2)
        b.weight.data.uniform_(0.5, 1.5)
    for opset in (11, 17):
        torch.onnx.export(m, torch.randn(2, 3, 16, 16), f"torch_block_op{opset}.onnx",
                          opset_version=opset, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False,
                          do_constant_folding=False)


if __name__ == "__main__":
    main()
