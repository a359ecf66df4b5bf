"""The only importer of the compiled C core ``dumpfilter._lib``.

Owns the status -> exception table and checks that the compiled library is
the one this Python package was built with.
"""
from dumpfilter import __version__
from dumpfilter.errors import CodecError, CorruptDumpError, DumpFilterError


class CoreInputError(CorruptDumpError):
    """The C core refused its arguments (DF_ERR_INVALID): a buffer shorter
    than its count says, or a layout read from the dump that does not fit
    (a field outside struct page, an order count past 64)."""

try:
    from dumpfilter._lib import ffi, lib
except ImportError as e:  # pragma: no cover - only on broken installs
    raise ImportError(
        "dumpfilter's C core is not built; reinstall with "
        "'pip install .' (it needs a C compiler and cffi)"
    ) from e

_built = ffi.string(lib.df_build_version()).decode()
if _built != __version__:  # pragma: no cover - stale in-place builds
    raise ImportError(
        f"dumpfilter C core was built for {_built}, package is {__version__}; rebuild it"
    )

_STATUS_EXCEPTIONS = {
    lib.DF_ERR_INVALID: CoreInputError,
    lib.DF_ERR_CORRUPT: CorruptDumpError,
    lib.DF_ERR_OVERFLOW: CodecError,
}


def check(status: int, what: str) -> None:
    """Raise the exception that ``status`` (a df_status) maps to."""
    if status == lib.DF_OK:
        return
    exc = _STATUS_EXCEPTIONS.get(status, DumpFilterError)
    raise exc(f"{what}: C core status {status}")


def buf_len(buf) -> int:
    """Length in bytes of a buffer or cffi array passed to the C core (0 for NULL)."""
    if buf is ffi.NULL or buf is None:
        return 0
    if isinstance(buf, ffi.CData):
        return ffi.sizeof(buf)
    return memoryview(buf).nbytes


def n_items(arr) -> int:
    """Elements of a cffi array (0 for NULL)."""
    return 0 if arr is ffi.NULL or arr is None else len(arr)


__all__ = ["ffi", "lib", "check", "buf_len", "n_items", "CoreInputError"]
