"""Background contract."""
