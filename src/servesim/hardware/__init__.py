from servesim.hardware.catalog import Device, get_device, list_devices, load_device

__all__ = ["Device", "get_device", "list_devices", "load_device"]
