"""ST4VLA Workbench: step through spatially guided VLA policies and see every stage."""

__version__ = "0.1.0"
