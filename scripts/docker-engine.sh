#!/bin/bash
# Start or stop a Docker engine for dnslab on a machine without systemd (tests, CI).
# It takes no network of its own and leaves the host firewall alone:
#   --bridge=none (no docker0, nothing in 172.17/16), --iptables=false, --ip6tables=false,
#   --ip-masq=false. dnslab's docker backend wires containers itself (see README).
#   scripts/docker-engine.sh start|stop|status
set -u
RUN=${DNSLAB_ENGINE_RUN:-/run/dnslab-engine}
SOCK=/run/docker.sock
case "${1:-}" in
  start)
    if docker version >/dev/null 2>&1; then echo "docker engine already running"; exit 0; fi
    mkdir -p "$RUN"
    dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
            -H "unix://$SOCK" --pidfile "$RUN/dockerd.pid" >"$RUN/dockerd.log" 2>&1 &
    echo $! > "$RUN/started-by-dnslab"
    for _ in $(seq 1 300); do docker version >/dev/null 2>&1 && { echo "docker engine started"; exit 0; }; sleep 0.1; done
    echo "docker engine did not start; see $RUN/dockerd.log" >&2; tail -5 "$RUN/dockerd.log" >&2; exit 3 ;;
  stop)
    # Only an engine this script started, by its recorded PID.
    [ -f "$RUN/started-by-dnslab" ] || { echo "no engine started by this script"; exit 0; }
    pid=$(cat "$RUN/started-by-dnslab")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 200); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    rm -f "$RUN/started-by-dnslab"; echo "docker engine stopped" ;;
  status) docker version --format 'engine {{.Server.Version}}' ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
