"""The only importer of the compiled C core ``dumpfilter._lib``.

Owns the status -> exception table and checks that the compiled library is
the one this Python package was built with.
"""
from dumpfilter import __version__
from dumpfilter.errors import CodecError, CorruptDumpError, DumpFilterError

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
    lib.DF_ERR_INVALID: ValueError,
    lib.DF_ERR_CORRUPT: CorruptDumpError,
    lib.DF_ERR_OVERFLOW: CodecError,
}


def check(status: int, what: str) -> None:
    """Raise the exception that ``status`` (a df_status) maps to."""
    if status == lib.DF_OK:
        return
    exc = _STATUS_EXCEPTIONS.get(status, DumpFilterError)
    raise exc(f"{what}: C core status {status}")


__all__ = ["ffi", "lib", "check"]
