"""Small shared helpers: atomic writes, safe paths, provenance."""
