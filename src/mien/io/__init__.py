"""Readers (images) and writers (tables)."""
