"""`python -m bench`: the command line (bench.cli)."""
import sys

from bench.cli import main

sys.exit(main())
