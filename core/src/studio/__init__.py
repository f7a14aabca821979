"""studio: text-to-3D by score distillation, as a small core plus method plugins.

Importing this package is cheap: it imports no torch. Heavy modules are imported only when a
command needs them.
"""

__version__ = "0.1.0"
