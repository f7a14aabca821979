"""Renderer contract."""
