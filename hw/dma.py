"""The DMA port contract between the accelerator's modules and its AXI4 master.

Modules never speak AXI themselves. Each DRAM client (fetch, load, compute, store) owns one
port; the AXI master (``hw/axi.py``) serves all ports, splits requests into legal AXI bursts
(at most 256 beats, never across a 4 KiB boundary) and returns read data **in request order
per port**. A client may issue a new request before the data of earlier ones has arrived.

* Addresses are physical **byte** addresses, aligned to the bus width (``cfg.axi_bytes``).
* ``beats`` counts bus words of ``cfg.axi_data_width`` bits, at least 1.
* Data is little-endian: byte ``k`` of a beat is bits ``8k .. 8k+7``.
* Write ports return one ``done`` transfer per request once the last write response (B) has
  arrived, so a module only reports completion (pushes a token) when its data is in DRAM.
"""

from amaranth import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DmaRequest", "ReadPortSignature", "WritePortSignature", "MAX_REQUEST_BEATS"]

#: Largest ``beats`` value of one request (the AXI master splits it into bursts).
MAX_REQUEST_BEATS = (1 << 24) - 1


class DmaRequest(data.Struct):
    """One DMA request: ``beats`` bus words starting at byte address ``addr``."""
    addr: unsigned(32)
    beats: unsigned(24)


class ReadPortSignature(wiring.Signature):
    """A DMA read port, from the client's side: requests out, data beats in."""

    def __init__(self, data_width: int):
        self.data_width = data_width
        super().__init__({
            "req": Out(stream.Signature(DmaRequest)),
            "data": In(stream.Signature(unsigned(data_width))),
        })


class WritePortSignature(wiring.Signature):
    """A DMA write port, from the client's side: requests and data beats out, completions in.

    ``done`` carries one bit per completed request: 1 if any write response was an error.
    """

    def __init__(self, data_width: int):
        self.data_width = data_width
        super().__init__({
            "req": Out(stream.Signature(DmaRequest)),
            "data": Out(stream.Signature(unsigned(data_width))),
            "done": In(stream.Signature(unsigned(1))),
        })
