#!/bin/bash
# Builds a small busybox root filesystem tarball for tests and demos:
#   deploy/make-test-image.sh OUT.tar        then: berth image import busybox OUT.tar
# It uses Debian's busybox-static (installed with apt-get only if missing), needs no
# network otherwise, and is reproducible: the same busybox gives the same bytes, and so
# the same image id.
set -euo pipefail

if [ $# -ne 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    echo "usage: $0 OUT.tar" >&2
    exit 64
fi
out=$1
umask 022

# A static busybox, so the image needs no shared libraries. `ldd` exits 1 on a static
# binary; capture its output rather than pipe it (pipefail).
is_static() {
    [ -x /bin/busybox ] || return 1
    local text
    text=$(LC_ALL=C ldd /bin/busybox 2>&1 || true)
    case $text in *"not a dynamic executable"*|*"statically linked"*) return 0 ;; esac
    return 1
}
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' || ! is_static; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y busybox-static >&2
fi
is_static || { echo "$0: /bin/busybox is not statically linked" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$out.tmp.$$"' EXIT
root=$tmp/rootfs
mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,root,var}
chmod 0755 "$root"
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"
install -m 0755 /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
GROUP
chmod 0644 "$root/etc/passwd" "$root/etc/group"

# Owner, order and times fixed, so the output depends on busybox alone.
tar --create --file "$out.tmp.$$" --directory "$root" --format=gnu \
    --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 .
mv "$out.tmp.$$" "$out"
realpath "$out"
