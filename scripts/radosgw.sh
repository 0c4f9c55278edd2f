#!/usr/bin/env bash
# A one-node Ceph cluster with radosgw on 127.0.0.1 for the S3 tests and benchmarks (the recipe of
# ../shared/reference/recipes.md §4): one mon, one OSD on memstore (RAM), one radosgw
# that checks SigV4 signatures; user "test" with access key "test" and secret "testsecret".
#   scripts/radosgw.sh start DIR [PORT]   # ~12 s; prints the endpoint
#   scripts/radosgw.sh stop DIR
# RGW_MEMSTORE_BYTES sets the OSD's RAM cap (default 4 GiB).
# Needs: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd (scripts/deps.sh).
set -euo pipefail
cmd="${1:?start|stop}"; D="${2:?DIR}"; PORT="${3:-7480}"
# The Ceph daemons keep every descriptor they inherit: close all but 0-2, or a caller reading
# this script's output through a pipe would wait for them to exit.
# (255 is bash's own descriptor of this script.)
for fd in $(ls /proc/$$/fd); do
  case "$fd" in 0|1|2|255) ;; *) eval "exec $fd>&-" 2>/dev/null || true ;; esac
done
stop() {
    for n in client.rgw.a osd.0 mon.a; do
        [ -f "$D/run/$n.pid" ] || continue
        p="$(cat "$D/run/$n.pid")"; kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
}
if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }
command -v radosgw >/dev/null || { echo "radosgw is not installed: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd" >&2; exit 1; }
stop 2>/dev/null || true
rm -rf "$D"; mkdir -p "$D"/{run,log,mon/a,osd/0,rgw}
MONPORT=$((PORT + 100))
FSID="$(cat /proc/sys/kernel/random/uuid)"
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v1:127.0.0.1:$MONPORT
mon initial members = a
keyring = $D/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
osd crush chooseleaf type = 0
osd objectstore = memstore
osd class update on start = false
memstore device bytes = ${RGW_MEMSTORE_BYTES:-4294967296}
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
ms bind ipv4 = true
public addr = 127.0.0.1
[mon.a]
mon data = $D/mon/a
[osd.0]
osd data = $D/osd/0
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT tcp_nodelay=1
rgw data = $D/rgw
CONF
export CEPH_CONF="$D/ceph.conf"; K="$D/keyring"
monmaptool --create --fsid "$FSID" --addv a "[v1:127.0.0.1:$MONPORT]" "$D/monmap" >/dev/null
ceph-authtool --create-keyring "$K" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' --cap mgr 'allow profile osd' >/dev/null
ceph-authtool "$K" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
ceph-mon --mkfs -i a --monmap "$D/monmap" --keyring "$K" -c "$CEPH_CONF"
ceph-mon -i a -c "$CEPH_CONF"
OSD_UUID="$(cat /proc/sys/kernel/random/uuid)"; OSD="$(ceph osd new "$OSD_UUID")"
ceph-osd -i "$OSD" --mkfs --osd-uuid "$OSD_UUID" -c "$CEPH_CONF" 2>/dev/null
ceph-osd -i "$OSD" -c "$CEPH_CONF"
radosgw -c "$CEPH_CONF" -n client.rgw.a
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.5; done
radosgw-admin -c "$CEPH_CONF" user create --uid=test --display-name=test --access-key=test --secret-key=testsecret >/dev/null
echo "http://127.0.0.1:$PORT"
