"""Versioned, immutable image datasets (manifests with content hashes) and their importers."""
