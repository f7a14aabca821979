"""Volume renderers."""
