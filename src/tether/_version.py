"""The version of this tether package (one place; the BEAM companion and pyproject read it too)."""

__version__ = "0.1.0"
