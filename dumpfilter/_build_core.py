"""cffi build of the C core (csrc/) into ``dumpfilter._lib``.

Every source file is named explicitly. ``DUMPFILTER_WERROR=1`` turns compiler
warnings into errors (CI sets it).
"""
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")
SOURCES = ["bitmap.c", "classify.c", "zeropage.c", "lzo1x.c", "pages.c"]

ffibuilder = FFI()
with open(os.path.join(CSRC, "dumpfilter_cdef.h")) as f:
    ffibuilder.cdef(f.read())

_args = ["-O3", "-Wall", "-Wextra", "-std=c99"]
if os.environ.get("DUMPFILTER_WERROR") == "1":
    _args.append("-Werror")
# .ci/sanitize: e.g. "-fsanitize=address,undefined -fno-omit-frame-pointer"
_extra = os.environ.get("DUMPFILTER_SANITIZE_FLAGS", "").split()
_args += _extra

ffibuilder.set_source(
    "dumpfilter._lib",
    '#include "dumpfilter.h"\n'
    "static const char *df_build_version(void) { return DF_BUILD_VERSION; }\n",
    # Relative paths: setuptools requires them for sources.
    sources=[os.path.relpath(os.path.join(CSRC, s)) for s in SOURCES],
    include_dirs=[CSRC],
    extra_compile_args=_args,
    extra_link_args=_extra,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
