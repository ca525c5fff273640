#!/usr/bin/env bash
# A throwaway PostgreSQL cluster of a test's own, from the machine's binaries: for the tests that
# need a server whose transaction counter starts where they say, or one they may stop.
#
#   private-cluster.sh start DIR [NEXT_XID]   initialise DIR (first time only; NEXT_XID sets the
#                                             transaction counter before the first start), start
#                                             the server on a unix socket in DIR, print its URL
#   private-cluster.sh stop DIR               stop it (fast), keeping the data
#   private-cluster.sh destroy DIR            stop it and remove DIR
#
# As root the server runs as the `postgres` user (PostgreSQL refuses root), so DIR must be where
# that user can reach it (under /tmp, not /root). Nothing listens on the network.
set -euo pipefail

command=${1:?usage: private-cluster.sh start|stop|destroy DIR [NEXT_XID]}
dir=${2:?usage: private-cluster.sh start|stop|destroy DIR [NEXT_XID]}
next_xid=${3:-}

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "no PostgreSQL binaries under /usr/lib/postgresql" >&2; exit 1; }

as_server() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

data="$dir/data"
case "$command" in
  start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    if [ ! -f "$data/PG_VERSION" ]; then
      as_server "$bindir/initdb" -D "$data" -A trust -U postgres --encoding=UTF8 >/dev/null
      if [ -n "$next_xid" ]; then
        # The commit log must hold the page of the new counter: one pg_xact segment covers
        # 2^20 transactions (32 pages of 8 kB, 4 transactions a byte). Zeroes mean "in progress",
        # which is what a transaction not yet begun is.
        segment=$(printf '%04X' $((next_xid / 1048576)))
        as_server truncate -s 262144 "$data/pg_xact/$segment"
        as_server "$bindir/pg_resetwal" -x "$next_xid" -D "$data" >/dev/null
      fi
    fi
    as_server "$bindir/pg_ctl" -D "$data" -l "$dir/postgres.log" -w \
      -o "-k $dir -c listen_addresses='' -c fsync=off -c max_connections=200" start >/dev/null
    echo "postgres://postgres@localhost/postgres?host=$dir"
    ;;
  stop)
    as_server "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    ;;
  destroy)
    as_server "$bindir/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *)
    echo "unknown command $command" >&2
    exit 2
    ;;
esac
