"""The package's version (pyproject.toml's `version`; tests/unit/test_import_graph.py keeps them equal)."""

__version__ = "0.1.0"
