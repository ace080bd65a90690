"""The compiler: ONNX models to int8 VTA instruction streams (and CPU partitions)."""
