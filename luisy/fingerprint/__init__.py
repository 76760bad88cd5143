"""Fingerprints of tasks: code, parameters, upstream and input data (see docs/reruns.rst)."""
