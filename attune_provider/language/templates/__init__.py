"""Jinja templates of the language: the sandboxed environment, rendering, analysis."""
