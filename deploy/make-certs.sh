#!/usr/bin/env bash
# Makes a lab certificate authority and the certificates Berth's mutual TLS needs, with
# the openssl command line (Debian's openssl package):
#
#   deploy/make-certs.sh DIR ca                         DIR/ca.pem, DIR/ca-key.pem
#   deploy/make-certs.sh DIR agent NAME HOST_OR_IP...   DIR/NAME.pem, DIR/NAME-key.pem (serverAuth; SANs)
#   deploy/make-certs.sh DIR client NAME [ROLE]         DIR/NAME.pem, DIR/NAME-key.pem (clientAuth;
#                                                       CN=NAME, OU=ROLE: admin (default) or viewer)
#
# Keys are EC P-256, mode 0600, made under umask 077; certificates are valid for 825
# days (the CA for 10 years). The agent's SANs are what clients check against the
# address they dialled, as `docker --tlsverify` does: give every name and IP it is
# reached by. The client's OU is the role the agent maps it to (docs/security.md).
set -euo pipefail
umask 077

usage() { sed -n '2,13p' "$0" >&2; exit 64; }
[ $# -ge 2 ] || usage
dir=$1 kind=$2
shift 2
mkdir -p "$dir"
command -v openssl >/dev/null || { echo "$0: openssl is required (apt-get install -y openssl)" >&2; exit 1; }

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 0600 "$1"; }

case $kind in
ca)
    [ $# -eq 0 ] || usage
    key "$dir/ca-key.pem"
    openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 3650 -subj "/CN=Berth lab CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem"
    chmod 0644 "$dir/ca.pem"
    echo "$dir/ca.pem"
    ;;
agent|client)
    [ $# -ge 1 ] || usage
    name=$1
    shift
    case $name in *[!A-Za-z0-9._-]*|"") echo "$0: invalid name \"$name\"" >&2; exit 64 ;; esac
    [ -f "$dir/ca.pem" ] && [ -f "$dir/ca-key.pem" ] || { echo "$0: make the CA first: $0 $dir ca" >&2; exit 1; }
    key "$dir/$name-key.pem"
    ext=$(mktemp)
    trap 'rm -f "$ext" "$dir/$name.csr"' EXIT
    if [ "$kind" = agent ]; then
        [ $# -ge 1 ] || { echo "$0: an agent certificate needs at least one host name or IP" >&2; exit 64; }
        sans=""
        for h in "$@"; do
            if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then sans+="${sans:+,}IP:$h"; else sans+="${sans:+,}DNS:$h"; fi
        done
        subject="/CN=$name"
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$sans" > "$ext"
    else
        role=${1:-admin}
        case $role in admin|viewer) ;; *) echo "$0: role must be admin or viewer, not \"$role\"" >&2; exit 64 ;; esac
        subject="/CN=$name/OU=$role"
        printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > "$ext"
    fi
    openssl req -new -key "$dir/$name-key.pem" -subj "$subject" -out "$dir/$name.csr"
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
        -days 825 -sha256 -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
    chmod 0644 "$dir/$name.pem"
    echo "$dir/$name.pem"
    ;;
*) usage ;;
esac
