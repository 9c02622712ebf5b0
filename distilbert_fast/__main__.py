"""`python -m distilbert_fast ...`: the distilbert-fast command line (see distilbert_fast/cli.py)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
