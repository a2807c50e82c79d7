"""Workflow sources: pack registries and directories besides the packs path (docs/sources.md)."""
