#!/bin/bash
# Command one. On a fresh Debian 12 (or Ubuntu) as root: install what dnslab needs
# (Debian packages and a virtualenv in .venv), then bring up the dns-basics lab, show
# its status, run its checks, resolve a name from the trainee's client, and tear it down.
#   bash setup.sh                 install + demo
#   bash setup.sh --install-only  install only
#   bash setup.sh --docker        also install the docker backend's tools: docker.io (the
#                                 engine; its packaged service is not started, see
#                                 scripts/docker-engine.sh) and debootstrap (`dnslab images build`)
#   .ci/run uses --install-only --docker
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then echo "setup.sh: run it as root (sudo bash setup.sh)" >&2; exit 3; fi
install_only=""; docker=""
for arg in "$@"; do
  case "$arg" in
    --install-only) install_only=1 ;;
    --docker) docker=1 ;;
    *) echo "setup.sh: unknown option $arg (known: --install-only, --docker)" >&2; exit 2 ;;
  esac
done

# Host tools, then every kind's packages (the same lists the Docker images use). zonemaster-cli
# is a registry's pre-delegation test, run against a lab from its client (dnslab exec ... client);
# node-configurable-http-proxy is the proxy of a class's JupyterHub (up --hub); chromium and its
# driver run the browser tests (a trainee and the instructor at the hub, headless).
HOST_PKGS="python3 python3-venv iproute2 util-linux mount e2fsprogs tar nftables procps graphviz tcpdump passwd
           zonemaster-cli node-configurable-http-proxy openssl chromium chromium-driver"
KIND_PKGS=$(grep -hv '^#' images/*/packages.txt | sort -u | tr '\n' ' ')
DAEMONS="bind9:named unbound:unbound knot:knot nsd:nsd knot-resolver:kresd@1"
if [ -n "$docker" ]; then
  # The packaged engine would make docker0 in 172.17/16 and add iptables rules: keep its
  # units (socket-activated too) off; dnslab starts an engine of its own that touches neither.
  HOST_PKGS="$HOST_PKGS docker.io debootstrap"
  DAEMONS="$DAEMONS docker.io:docker.socket docker.io:docker containerd:containerd"
fi

new_daemons=""
for pair in $DAEMONS; do
  dpkg -s "${pair%%:*}" >/dev/null 2>&1 || new_daemons="$new_daemons ${pair##*:}"
done
missing=""
for p in $HOST_PKGS $KIND_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "==> installing Debian packages:$missing"
  # Keep the packages' own services from starting on the host while installing: dnslab
  # runs the daemons itself, inside each lab's namespaces.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ] && [ -n "$new_daemons" ]; then
    for unit in $new_daemons; do systemctl disable --now "$unit" >/dev/null 2>&1 || true; done
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating the virtualenv .venv"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
fi
echo "==> installing dnslab and its Python dependencies into .venv"
.venv/bin/pip install -q -e '.[test]' >/dev/null
echo "==> installed: $(.venv/bin/dnslab --version)"
[ -n "$install_only" ] && exit 0

dnslab=.venv/bin/dnslab
work=$(mktemp -d /tmp/dnslab-demo.XXXXXX)
export DNSLAB_COURSE="$work/course"   # the demo's own nbgrader course; a class uses /var/lib/dnslab/course
cleanup() {
  $dnslab down demo >/dev/null 2>&1 || true
  $dnslab down --purge demo-trainee >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
echo "==> dnslab up dns-basics"
$dnslab up dns-basics --name demo
echo "==> dnslab status demo"
$dnslab status demo
echo "==> dnslab check demo"
$dnslab check demo
echo "==> the trainee's client asks its resolver: dig www.example.test"
$dnslab exec demo client -- dig +nocmd +noquestion +nostats www.example.test
echo "==> dnslab down demo"
$dnslab down demo

echo "==> a class of one at one address: dnslab up dns-basics --trainees roster.csv --hub"
printf 'trainee,lang\nDemo Trainee,en\n' > "$work/roster.csv"
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$dnslab up dns-basics --trainees "$work/roster.csv" --hub --hub-port "$port"
echo "==> the lab ships with the exercise's fault (a lame delegation): the instructor's view of the class"
$dnslab class status --class roster
echo "==> the trainee hands in the reference solution (saved with her own rights); dnslab grade dns-basics"
$dnslab exercise dns-basics --lang en -o "$work/solution.ipynb"
trainee_uid=$(id -u dnslab-demo-trainee)
setpriv --reuid="$trainee_uid" --regid="$trainee_uid" --clear-groups -- \
  sh -c 'cat > /var/lib/dnslab/home/demo-trainee/dns-basics/dns-basics.ipynb' < "$work/solution.ipynb"
$dnslab grade dns-basics --class roster
echo "==> the graded notebook repaired the live lab: dnslab check demo-trainee; the class's view"
$dnslab check demo-trainee
$dnslab class status --class roster
echo "==> dnslab down --purge demo-trainee"
$dnslab down --purge demo-trainee
trap - EXIT
cleanup
echo "==> done: see README.md for what to try next"
