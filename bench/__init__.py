"""Benchmarks: our figures against bare baselines measured in the same run (`python -m bench`).

They print figures and never fail on speed; see bench/README.md for the method of each.
"""
