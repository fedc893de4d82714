"""The run layer: a run directory, its files and checkpoints, and loading a trained run.

``train`` and ``evaluate`` both build on this package and never import each other.
"""

__all__: list[str] = []
