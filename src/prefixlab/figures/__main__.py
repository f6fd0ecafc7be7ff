import sys

from prefixlab.figures.cli import main

sys.exit(main())
