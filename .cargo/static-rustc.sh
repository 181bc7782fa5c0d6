#!/bin/sh
# rustc wrapper (see config.toml): links the `fivetran_source` executable statically.
#
# Hosts ship one self-contained executable. `-C target-feature=+crt-static` in `rustflags` would
# also reach build scripts and proc-macros, which cannot link statically, so it is added here
# only when rustc builds this package's binary. glibc >= 2.34 has its DNS and files NSS modules
# built in, so name resolution works without loading shared libraries at run time.
rustc="$1"
shift
case " $* " in
*" --crate-name fivetran_source "*" --crate-type bin "* | *" --crate-type bin "*" --crate-name fivetran_source "*)
    case "$(uname -s)" in
    Linux) exec "$rustc" "$@" -C target-feature=+crt-static ;;
    esac
    ;;
esac
exec "$rustc" "$@"
