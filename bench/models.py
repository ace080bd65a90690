"""Benchmark models built with ``onnx.helper`` (random weights, no download needed).

``resnet18()``: the ImageNet ResNet-18 topology (torchvision's layout: 7x7/2 stem, 3x3/2 max
pool, four stages of two basic blocks with 1x1/2 projection shortcuts, global average pool,
1000-way fully-connected), 224x224 input, convolutions with folded batch norm (a bias), He-
initialised random weights.
"""

from __future__ import annotations

import numpy as np

__all__ = ["resnet18", "RESNET18_MACS"]

#: Multiply-accumulates of ResNet-18 at 224x224 (convolutions + fully-connected).
RESNET18_MACS = 1_814_073_344


def resnet18(seed: int = 0, image: int = 224, classes: int = 1000, batch: int = 1,
             opset: int = 13):
    """The ResNet-18 ONNX model (``onnx.ModelProto``), input ``"input"`` (N, 3, H, W) float."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def conv(x, name, cin, cout, k, stride, pad, relu=True):
        w = rng.normal(0, np.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k))
        b = rng.normal(0, 0.05, cout)
        out = f"{name}_out"
        nodes.append(helper.make_node("Conv", [x, const(f"{name}_w", w), const(f"{name}_b", b)],
                                      [out], name=name, kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[pad] * 4))
        if relu:
            nodes.append(helper.make_node("Relu", [out], [f"{name}_relu"], name=f"{name}_relu"))
            return f"{name}_relu"
        return out

    x = conv("input", "conv1", 3, 64, 7, 2, 3)
    nodes.append(helper.make_node("MaxPool", [x], ["pool1"], name="maxpool", kernel_shape=[3, 3],
                                  strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = "pool1", 64
    for stage, cout in enumerate([64, 128, 256, 512], start=1):
        for blk in range(2):
            stride = 2 if stage > 1 and blk == 0 else 1
            name = f"layer{stage}.{blk}"
            y = conv(x, f"{name}.conv1", cin, cout, 3, stride, 1)
            y = conv(y, f"{name}.conv2", cout, cout, 3, 1, 1, relu=False)
            short = x
            if stride != 1 or cin != cout:
                short = conv(x, f"{name}.downsample", cin, cout, 1, stride, 0, relu=False)
            nodes.append(helper.make_node("Add", [y, short], [f"{name}_sum"], name=f"{name}.add"))
            nodes.append(helper.make_node("Relu", [f"{name}_sum"], [f"{name}_out"],
                                          name=f"{name}.relu"))
            x, cin = f"{name}_out", cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="avgpool"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    fw = rng.normal(0, np.sqrt(1.0 / 512), (classes, 512))
    nodes.append(helper.make_node("Gemm", ["flat", const("fc_w", fw),
                                           const("fc_b", rng.normal(0, 0.01, classes))],
                                  ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "resnet18",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
