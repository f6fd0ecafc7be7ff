import sys

from prefixlab.cli import main

sys.exit(main())
