"""Data packages mapped from the repository root: the default community pool, policies and
values catalogue."""
