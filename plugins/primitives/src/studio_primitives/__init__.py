"""studio-primitives: Embedded text-to-image models of coloured primitive shapes for offline runs."""

__version__ = "0.1.0"
