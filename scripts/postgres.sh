#!/usr/bin/env bash
# A throw-away PostgreSQL server on 127.0.0.1 for the daemon's metadata tests and benchmarks
# (../shared/reference/recipes.md §6): its own data folder, trust authentication on loopback,
# database "trove". fsync is off (tests only: the machine itself never crashes here), but
# synchronous_commit stays on, so that a server killed with SIGKILL loses no acknowledged
# commit — the restart test checks exactly that.
#   scripts/postgres.sh start DIR [PORT]   # ~1.5 s; prints postgres://postgres@127.0.0.1:PORT/trove
#   scripts/postgres.sh stop DIR           # fast shutdown
#   scripts/postgres.sh kill DIR           # SIGKILL the postmaster and its backends (restart tests)
#   scripts/postgres.sh restart DIR        # start again on the kept data folder and port
# Needs: apt-get install -y postgresql (scripts/deps.sh).
set -euo pipefail
cmd="${1:?start|stop|kill}"; D="${2:?DIR}"; PORT="${3:-55432}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -n "$BIN" ] || { echo "PostgreSQL is not installed: apt-get install -y postgresql" >&2; exit 1; }
# The server keeps every descriptor it inherits: close all but 0-2 (and bash's own 255), or a
# caller reading this script's output through a pipe would wait for the server to exit.
for fd in $(ls /proc/$$/fd); do
  case "$fd" in 0|1|2|255) ;; *) eval "exec $fd>&-" 2>/dev/null || true ;; esac
done
as_postgres() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  stop)
    [ -f "$D/data/postmaster.pid" ] && as_postgres "$BIN/pg_ctl" -D "$D/data" -m fast -w stop >/dev/null 2>&1 || true
    exit 0 ;;
  kill)
    [ -f "$D/data/postmaster.pid" ] || exit 0
    pid="$(head -1 "$D/data/postmaster.pid")"
    pkill -KILL -P "$pid" 2>/dev/null || true; kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    exit 0 ;;
  restart)
    # Start again on the data folder kept by `kill` or `stop`.
    PORT="$(cat "$D/port")"
    rm -f "$D/data/postmaster.pid"
    as_postgres "$BIN/pg_ctl" -D "$D/data" -l "$D/pg.log" -w \
      -o "-p $PORT -k $D -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" start >/dev/null
    echo "postgres://postgres@127.0.0.1:$PORT/trove"; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|kill|restart DIR [PORT]" >&2; exit 2 ;;
esac
if [ -f "$D/data/postmaster.pid" ]; then as_postgres "$BIN/pg_ctl" -D "$D/data" -m fast -w stop >/dev/null 2>&1 || true; fi
rm -rf "$D"; mkdir -p "$D"; chmod 700 "$D"
[ "$(id -u)" -eq 0 ] && chown postgres: "$D"
as_postgres "$BIN/initdb" -D "$D/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
echo "$PORT" > "$D/port"; [ "$(id -u)" -eq 0 ] && chown postgres: "$D/port"
as_postgres "$BIN/pg_ctl" -D "$D/data" -l "$D/pg.log" -w \
  -o "-p $PORT -k $D -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=200" start >/dev/null
psql -h 127.0.0.1 -p "$PORT" -U postgres -qAtc 'create database trove' >/dev/null
echo "postgres://postgres@127.0.0.1:$PORT/trove"
