"""Offline guards around the pipeline: prompt injection, personal data, and rendered output.

Nothing here calls a network service or loads a model, so the guards run wherever cairn runs.
"""
