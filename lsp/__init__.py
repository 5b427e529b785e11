"""diffill.lsp."""
