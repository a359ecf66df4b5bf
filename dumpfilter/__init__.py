"""dumpfilter: makedumpfile-compatible crash-dump filter and compressor."""

__version__ = "0.1.0"
