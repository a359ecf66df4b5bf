"""``python -m dumpfilter.report``: same as ``dumpfilter-report``."""
import sys

from dumpfilter.report.cli import main

sys.exit(main())
