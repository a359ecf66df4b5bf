"""Output files: created private, never clobbering what we did not make.

A dump is the crashed kernel's memory — passwords, keys, other users'
data — so every file dumpfilter writes is created ``0600`` from the start
(``O_CREAT | O_EXCL``, no chmod afterwards), as makedumpfile does.

``-f`` replaces an existing *regular* file: it is unlinked and a new one is
created (so the new file is ``0600`` whatever the old one's mode). An
output that is one of the inputs (same device and inode, through hard or
symbolic links) or that is not a regular file (a device node, a FIFO, a
directory) is refused with or without ``-f``. On failure only the file
this run created is removed, after checking that the path still names it.
"""
from __future__ import annotations

import os
import stat
from typing import Iterable, Optional, Tuple, Union

from dumpfilter.errors import OutputExistsError, OutputRefusedError

MODE = 0o600


def _identity(src: Union[str, int]) -> Optional[Tuple[int, int]]:
    """(st_dev, st_ino) of a path (through symbolic links) or an open fd."""
    try:
        st = os.fstat(src) if isinstance(src, int) else os.stat(src)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_output_path(path: str, force: bool, inputs: Iterable[Union[str, int]] = ()) -> None:
    """Refuse ``path`` if it is an input (a path, or an open fd such as the
    standard input of ``-R``), not a regular file, or exists without
    ``force``. Nothing is changed."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputRefusedError(f"{path}: {e.strerror}") from None
    if st is not None:
        ident = (st.st_dev, st.st_ino)
        for src in inputs:
            if _identity(src) == ident:
                what = "the standard input" if src == 0 else (
                    f"input fd {src}" if isinstance(src, int) else f"the input {src}")
                raise OutputRefusedError(f"{path} is {what}; refusing to overwrite it")
        if not stat.S_ISREG(st.st_mode):
            raise OutputRefusedError(f"{path} exists and is not a regular file; refusing to overwrite it")
        if not force:
            raise OutputExistsError(f"{path} already exists; use -f to overwrite it")
    elif os.path.islink(path) and not force:
        raise OutputExistsError(f"{path} already exists (a dangling symbolic link); "
                                "use -f to overwrite it")


class OutputFile:
    """A new regular file at ``path``, mode 0600, open read-write.

    Use as a context manager: leaving the block with an exception removes
    the file unless ``keep()`` was called."""

    def __init__(self, path: str, force: bool = False,
                 inputs: Iterable[Union[str, int]] = ()):
        self.path = os.fspath(path)
        check_output_path(self.path, force, inputs)
        if force and os.path.lexists(self.path):
            os.unlink(self.path)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            self.fd = os.open(self.path, flags, MODE)
        except FileExistsError:  # appeared since the check
            raise OutputExistsError(f"{self.path} already exists; use -f to overwrite it") from None
        st = os.fstat(self.fd)
        self._ident = (st.st_dev, st.st_ino)
        self.kept = False

    def keep(self) -> None:
        """The run succeeded (or left a dump marked incomplete): keep it."""
        self.kept = True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def discard(self) -> None:
        """Close and remove the file, if the path still names the file
        this run created."""
        self.close()
        try:
            st = os.lstat(self.path)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == self._ident:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __enter__(self) -> "OutputFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self.kept:
            self.discard()
        else:
            self.close()
