"""The CPU fallback: ONNX operators in numpy and compiled through LLVM."""
