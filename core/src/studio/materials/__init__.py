"""Material contract."""
