"""Systems: what a method trains (its parts, its loss, what it renders for validation and test)."""
