"""ComponentResources of the labeling platform, one per concern."""

from pathlib import Path

# The repository root: label configs and the reconciler are read from here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
