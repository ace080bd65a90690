"""pyvta: an open hardware/software co-design stack for a VTA-style int8 accelerator.

Subpackages: :mod:`pyvta.hw` (configuration, ISA, Amaranth RTL), :mod:`pyvta.sim`
(functional and RTL simulation), :mod:`pyvta.compiler` (ONNX to instruction streams),
:mod:`pyvta.runtime` (run compiled models on any target), :mod:`pyvta.driver` (PYNQ boards).
"""

__version__ = "0.1.0"
