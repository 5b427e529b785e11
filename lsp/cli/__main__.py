"""`python -m diffill.lsp.cli COMMAND ...`: the same as the `diffill` command."""
import sys

from diffill.lsp.cli import main

sys.exit(main())
