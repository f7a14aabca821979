"""``studio plugins new NAME``: generate an external plugin package."""
