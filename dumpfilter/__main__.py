import sys

from dumpfilter.cli import main

sys.exit(main())
