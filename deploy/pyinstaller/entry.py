"""The executable's entry point: the ``audiototext`` command."""

import sys

from audiototext.cli import main

if __name__ == "__main__":
    sys.exit(main())
