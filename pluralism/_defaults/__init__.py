"""Data packages: the default community pool and policies (mapped from the repo root)."""
