"""The one exception hierarchy of dumpfilter.

Nothing below the CLI prints or exits: code raises one of these, and
``dumpfilter.cli`` turns it into one error line and an exit code.
"""


class DumpFilterError(Exception):
    """Base of every error dumpfilter raises on purpose."""

    exit_code = 1


class UsageError(DumpFilterError, ValueError):
    """Bad command line or option combination."""


class NotAVmcoreError(DumpFilterError, ValueError):
    """The input is not a dump format we know."""


class CorruptDumpError(DumpFilterError, ValueError):
    """The input claims a known format but its contents are inconsistent."""


class TruncatedDumpError(CorruptDumpError):
    """The input ends before the data its headers describe."""


class UnsupportedDumpError(DumpFilterError, NotImplementedError):
    """A valid dump using something dumpfilter does not handle (yet)."""


class VmcoreInfoError(DumpFilterError, KeyError):
    """A VMCOREINFO entry that is required is missing or malformed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class FaultError(DumpFilterError, LookupError):
    """An address could not be read from the dump (not present, excluded,
    not mapped). ``address`` is the failing address."""

    def __init__(self, message: str, address: int):
        super().__init__(message, address)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return f"{self.message}: {self.address:#x}"


class MissingPageError(FaultError):
    """A physical page the dump does not hold (absent from RAM ranges, or
    left out by the dump level); ``address`` is the physical address."""


class OutputExistsError(DumpFilterError, FileExistsError):
    """The output exists and -f was not given."""


class OutputRefusedError(DumpFilterError, FileExistsError):
    """The output path names one of the inputs or something that is not a
    regular file: refused with or without -f."""


class IncompleteDumpError(DumpFilterError, OSError):
    """The output device filled up (or -L was reached): the dump was kept,
    marked incomplete in its header."""


class CodecError(DumpFilterError, ValueError):
    """A page could not be compressed or decompressed."""
