"""Fingerprints of tasks: code, parameters, upstream and input data (SPEC §6)."""
