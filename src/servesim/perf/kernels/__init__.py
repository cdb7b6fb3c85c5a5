"""Kernel latency models: physical forms (forms), measurements (samples), fitting (fit, calibrate) and the
shipped coefficients (calibration)."""
