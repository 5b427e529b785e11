"""CLI subcommands that need the model."""
