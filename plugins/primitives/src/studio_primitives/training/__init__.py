"""Offline tooling that produced the shipped weights: data sets, model and classifier training.

Run through the ``studio primitives`` commands (``data``, ``train``, ``train-classifier``,
``sample-check``; :mod:`studio_primitives.commands`) or
``python -m studio_primitives.training.MODULE``.
Nothing that runs at ``studio run`` / ``studio eval`` time imports this package.
"""
