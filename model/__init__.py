"""diffill.model."""
