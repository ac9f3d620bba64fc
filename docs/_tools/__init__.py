"""Helpers of the documentation build (``mkdocs.yml``); not part of the package."""
