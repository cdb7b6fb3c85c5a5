"""Fidelity against the real vLLM: scenarios, the recorder bridge to the validation environment, and replay."""
