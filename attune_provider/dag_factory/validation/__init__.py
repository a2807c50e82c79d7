"""Every static check of a catalog, each family in its own module, returning located Problems."""
