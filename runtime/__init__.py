"""pyvta.runtime: run compiled models on the CPU, the functional simulator or the RTL.

``pyvta.runtime.load(path_or_model, target="fsim") -> Session``; ``Session.run({name: array})``.
"""

from .devices import Device, DeviceError, FsimDevice, RtlDevice, RunStats, TARGETS
from .session import InputError, ProfileEntry, Session, load

__all__ = ["load", "Session", "InputError", "ProfileEntry", "Device", "DeviceError",
           "FsimDevice", "RtlDevice", "RunStats", "TARGETS"]
