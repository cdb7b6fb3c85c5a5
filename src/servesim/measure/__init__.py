"""Measure a real OpenAI-compatible server with a servesim workload; results in the simulator's file format."""
