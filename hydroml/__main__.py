"""``python -m hydroml`` runs the command line (also under ``torchrun -m hydroml``)."""

import sys

from hydroml.cli import main

if __name__ == "__main__":
    sys.exit(main())
