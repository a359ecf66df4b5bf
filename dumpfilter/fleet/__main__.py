import sys

from dumpfilter.fleet.cli import main

sys.exit(main())
