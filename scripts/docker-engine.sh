#!/bin/bash
# Start or stop a Docker engine for dnslab on a machine without systemd (tests, CI).
# It takes no network of its own and leaves the host's firewall and sysctls alone:
#   --bridge=none (no docker0, nothing in 172.17/16), --iptables=false, --ip6tables=false,
#   --ip-masq=false, --ip-forward=false. dnslab's docker backend runs containers with
#   network mode none and wires them itself (see README), so it needs none of these.
#   scripts/docker-engine.sh start|stop|status
# Environment: DNSLAB_ENGINE_SOCK (default /run/docker.sock), DNSLAB_ENGINE_DATA (--data-root,
# default docker's /var/lib/docker: images are kept between runs), DNSLAB_ENGINE_RUN (this
# script's pid/log dir). With a socket other than the default, export
# DOCKER_HOST=unix://<socket> for dnslab and docker to use that engine.
# `stop` also removes the engine's exec-root when `start` created it.
# `start` does nothing when an engine already answers (and `stop` then leaves it alone):
# only an engine this script started is stopped, by its recorded PID, never by name.
set -u
RUN=${DNSLAB_ENGINE_RUN:-/run/dnslab-engine}
SOCK=${DNSLAB_ENGINE_SOCK:-/run/docker.sock}
DATA=${DNSLAB_ENGINE_DATA:-}
EXEC_ROOT="$RUN/exec"           # the engine's own runtime state (containerd, netns mounts)
export DOCKER_HOST="unix://$SOCK"
MARK="$RUN/started-by-dnslab"   # "<pid> <start time>" of the dockerd this script started

start_time() { [ -r "/proc/$1/stat" ] && sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f20; }
ours_alive() {  # the recorded dockerd is still the same process (not a reused PID)
  [ -f "$MARK" ] || return 1
  read -r pid start < "$MARK"
  [ -n "${pid:-}" ] && [ "$(start_time "$pid")" = "${start:-}" ]
}

case "${1:-}" in
  start)
    if docker version >/dev/null 2>&1; then echo "docker engine already running (left as it is)"; exit 0; fi
    command -v dockerd >/dev/null || { echo "no dockerd: apt-get install docker.io (or bash setup.sh --docker)" >&2; exit 3; }
    mkdir -p "$RUN"
    setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false \
            -H "unix://$SOCK" --exec-root "$EXEC_ROOT" ${DATA:+--data-root "$DATA"} \
            --pidfile "$RUN/dockerd.pid" >"$RUN/dockerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid $(start_time "$pid")" > "$MARK"
    for _ in $(seq 1 300); do
      docker version >/dev/null 2>&1 && { echo "docker engine started (pid $pid)"; exit 0; }
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    echo "docker engine did not start; see $RUN/dockerd.log" >&2; tail -5 "$RUN/dockerd.log" >&2
    "$0" stop >/dev/null
    exit 3 ;;
  stop)
    # Only an engine this script started, by its recorded PID (checked against its start time).
    if ! ours_alive; then rm -f "$MARK"; echo "no engine started by this script is running"; exit 0; fi
    read -r pid _ < "$MARK"
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 300); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    if [ -d "/proc/$pid" ]; then
      echo "dockerd $pid did not stop in 30 s; killing it" >&2
      kill -KILL "$pid" 2>/dev/null; sleep 0.5
    fi
    rm -f "$MARK" "$RUN/dockerd.pid" "$SOCK"
    # its runtime state: dockerd leaves its netns/default bind mount behind; unmount what is
    # under the exec-root (deepest first), then remove it unless something stays mounted
    if [ -d "$EXEC_ROOT" ]; then
      awk -v r="$EXEC_ROOT/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r |
        while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
      grep -q " $EXEC_ROOT/" /proc/self/mountinfo || rm -rf "$EXEC_ROOT"
    fi
    echo "docker engine stopped (log: $RUN/dockerd.log)" ;;
  status) docker version --format 'engine {{.Server.Version}}' ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
