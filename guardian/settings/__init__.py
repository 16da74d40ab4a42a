"""The settings: the YAML read into frozen dataclasses, with durations, levels and secrets.

The lowest floor: imports nothing else of the guardian.
"""
