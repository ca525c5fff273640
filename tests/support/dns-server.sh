#!/usr/bin/env bash
# A real DNS server on 127.0.0.1 for the domain-proof tests (ADR-0025): Debian's dnsmasq,
# answering only from its command line, never forwarding, in the foreground so that the test
# that started it can stop it.
#
#   tests/support/dns-server.sh PORT [--txt-record=NAME,VALUE ...]
#
# Names it was not given answer NXDOMAIN (--local=/#/), as an unpublished record would.
# Install: apt-get install -y dnsmasq-base (scripts/test does it).
set -euo pipefail

port="${1:?usage: dns-server.sh PORT [--txt-record=NAME,VALUE ...]}"
shift

dnsmasq_bin="$(command -v dnsmasq || echo /usr/sbin/dnsmasq)"
if [[ ! -x "$dnsmasq_bin" ]]; then
    echo "dnsmasq is not installed: apt-get install -y dnsmasq-base" >&2
    exit 127
fi

user_args=()
# As root dnsmasq would switch to its own user; staying root avoids needing that account.
if [[ "$(id -u)" == 0 ]]; then
    user_args=(--user=root)
fi

exec "$dnsmasq_bin" \
    --conf-file=/dev/null \
    --no-resolv --no-hosts --no-poll \
    --local=/#/ \
    --port="$port" \
    --listen-address=127.0.0.1 --bind-interfaces \
    --pid-file= \
    --keep-in-foreground \
    "${user_args[@]}" \
    "$@"
