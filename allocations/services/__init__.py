"""Writes that matter for nodes, grants and access; see the modules for each."""
