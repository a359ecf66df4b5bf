#!/bin/bash
# dracut module "dumpfilter": puts dumpfilter (a makedumpfile-compatible collector) into the
# image, so that /etc/kdump.conf can say
#
#     core_collector dumpfilter -l --message-level 7 -d 31
#     dracut_args --add dumpfilter
#
# The files come from `python3 -m dumpfilter.initramfs`: the interpreter that dumpfilter is
# installed for, its shared libraries, only the modules a collector run imports (compiled),
# stripped .so files and /usr/bin/dumpfilter (a #! script, no shell needed). That archive is
# unpacked into the image.
#
# Settings (environment of dracut / kdumpctl, or /etc/dracut.conf.d/*.conf):
#   dumpfilter_python   interpreter to package (default: the one in the #! line of the
#                       installed `dumpfilter` command, else python3)
#   dumpfilter_codecs   codecs the collector may use (default lzo,zlib; e.g. lzo,zlib,zstd)

_dumpfilter_python() {
    if [[ -n ${dumpfilter_python:-} ]]; then
        echo "$dumpfilter_python"
        return
    fi
    # The interpreter of the installed command (pip puts it in /usr/local/bin, which is
    # not on dracut's PATH); "#!/usr/bin/env python3" names it on the same line.
    local _cmd _line _w
    for _cmd in "$(command -v dumpfilter 2> /dev/null)" /usr/local/bin/dumpfilter /usr/bin/dumpfilter; do
        [[ -f $_cmd ]] || continue
        read -r _line < "$_cmd" || continue
        [[ $_line == '#!'* ]] || continue
        set -- ${_line#\#!}
        [[ ${1##*/} == env ]] && shift
        for _w in "$@"; do
            [[ $_w == -* ]] && continue
            _w=$(command -v "$_w" 2> /dev/null) || break
            "$_w" -c 'import dumpfilter.initramfs' 2> /dev/null && echo "$_w" && return
            break
        done
    done
    command -v python3
}

# called by dracut
check() {
    local _py
    _py=$(_dumpfilter_python)
    [[ -n $_py ]] || return 1
    require_binaries cpio || return 1
    "$_py" -c 'import dumpfilter.initramfs' 2> /dev/null || return 1
    # only when asked for (--add dumpfilter / add_dracutmodules+=" dumpfilter ")
    return 255
}

# called by dracut
depends() {
    return 0
}

# called by dracut
install() {
    local _py _tmp _rc
    _py=$(_dumpfilter_python)
    _tmp=$(mktemp -d "${DRACUT_TMPDIR:-/tmp}/dumpfilter.XXXXXX") || return 1
    if ! "$_py" -m dumpfilter.initramfs "$_tmp/payload.cpio" \
        --codecs "${dumpfilter_codecs:-lzo,zlib}" 2> "$_tmp/report"; then
        dfatal "dumpfilter: python3 -m dumpfilter.initramfs failed: $(cat "$_tmp/report")"
        rm -rf "$_tmp"
        return 1
    fi
    dinfo "dumpfilter: $(head -n 1 "$_tmp/report")"
    # Same host, same files: our copies may replace what other modules installed
    # (-u), symlinks such as lib -> usr/lib are already there.
    (cd "$initdir" && cpio -idmu --quiet --no-absolute-filenames < "$_tmp/payload.cpio")
    _rc=$?
    rm -rf "$_tmp"
    if [[ $_rc != 0 ]] || [[ ! -x $initdir/usr/bin/dumpfilter ]]; then
        dfatal "dumpfilter: unpacking the payload into $initdir failed"
        return 1
    fi
    return 0
}
