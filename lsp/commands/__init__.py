"""CLI subcommands that run in the editor-facing package (no torch at import)."""
