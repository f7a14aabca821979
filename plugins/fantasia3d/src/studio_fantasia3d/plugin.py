"""Hook implementations of studio-fantasia3d (see studio.hookspecs).

Registrations are added here as the method's components land; each names an import path, so
discovering this plugin imports nothing heavy.
"""
