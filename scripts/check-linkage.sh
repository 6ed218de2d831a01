#!/usr/bin/env bash
# The release image is debian:bookworm-slim with ca-certificates only: the binary may link
# only to what its base ships (glibc, libgcc_s, the loader, the vDSO). Usage:
#   scripts/check-linkage.sh [path/to/jade]   (default target/release/jade)
set -euo pipefail
binary="${1:-target/release/jade}"
if [[ ! -x "$binary" ]]; then
    echo "check-linkage: $binary is missing: build it with cargo build --release --locked --all-features" >&2
    exit 2
fi
allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|/lib64/ld-linux-x86-64\.so\.2|/lib/ld-linux-aarch64\.so\.1)$'
status=0
while read -r library _; do
    [[ -z "$library" ]] && continue
    if [[ ! "$library" =~ $allowed ]]; then
        echo "check-linkage: $binary links $library, which debian:bookworm-slim does not ship" >&2
        status=1
    fi
done < <(ldd "$binary" | sed -e 's/^[[:space:]]*//' -e 's/ =>.*//' -e 's/ (0x.*//')
if [[ $status -eq 0 ]]; then
    echo "check-linkage: $binary links only libraries debian:bookworm-slim ships:"
    ldd "$binary" | sed 's/^/  /'
fi
exit $status
