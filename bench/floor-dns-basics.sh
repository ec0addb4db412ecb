#!/bin/bash
# The floor for dnslab's dns-basics lab: the same 9 nodes started by a bare script in network
# namespaces floorb-cC-*, no orchestration. Modelled on /work/shared/bench/floor-lab.sh.
#   NSD root + Knot root (both serve "."); the TLD test. on BIND (primary, node tld) and NSD
#   (secondary, tld2, transfers signed with a TSIG key fixed in this script); example.test. on Knot
#   (primary) and NSD (secondary); lab.test. on NSD (primary) and Knot (secondary), with NOTIFY and
#   transfers allowed between them as dnslab's configs do; NS records and glue name both servers of
#   each zone, the root lists test.'s two; BIND resolver, Unbound resolver, client.
#   Addresses as dnslab numbers the nodes: .1 a-root .2 b-root .3 tld .4 tld2 .5 sld-knot
#   .6 sld-nsd .7 BIND resolver .8 Unbound resolver .9 client.
# usage: floor-dns-basics.sh up C | down C | once      (times go to $FLOOR_DIR/cC/times)
# IPv4 only (dnslab's dns-basics also gives every node an IPv6 address); addresses 198.18.0.0/24,
# the same in every copy C (each copy has its own namespaces and bridge).
# NSD gets rrl-size: 1000 as in dnslab's nsd.conf.j2 (RRL on, small table; the default is most of its memory);
# secondaries get dnslab's lab timers (refresh 2-5 s, retry 1-5 s). No control channels: a secondary
# whose first transfer found its primary not yet listening gets the zone from the primary's NOTIFY
# at load or from its retry timer (dnslab tells it to retransfer after 1 s).
# Ready as strictly as dnslab: every server of every zone answers that zone's SOA with authority
# (NOERROR, aa, an answer; a secondary once it has transferred), each resolver answers, then the first
# answer www.example.test A 192.0.2.80 through the Unbound resolver. `up` exits 1 if one of these
# does not come (NOT_READY lines in times).
# Needs root, bind9 bind9-dnsutils knot nsd unbound bc.
# Namespaces floorb-cC-{sw,aroot,broot,tld,tld2,sldk,sldn,resb,resu,cli}; the bridge lives inside floorb-cC-sw.
# `down C` kills only the PIDs recorded by `up C` (then whatever is still inside its namespaces,
# by PID), deletes its namespaces and its run dir.
set -u
B=${FLOOR_DIR:-/tmp/dnslab-floorb}
NODES="aroot:1 broot:2 tld:3 tld2:4 sldk:5 sldn:6 resb:7 resu:8 cli:9"
TSIG=/RblnfEd1U6+ZZBQp23DuKrl6XK8Zov+Jbgdw4xl4Pg=   # xfr-test, hmac-sha256: a fixed key, fine for a benchmark
now(){ date +%s.%N; }
el(){ echo "$(now) - $1" | bc; }
waitq(){ # ns server qname qtype class [aa]  -> loop until NOERROR (aa: and authoritative, with an answer)
  local i r
  for i in $(seq 1 3000); do
    r=$(ip netns exec $1 dig +time=1 +tries=1 +norec @$2 $3 $4 $5 2>/dev/null)
    if echo "$r" | grep -q 'status: NOERROR'; then
      [ -z "${6:-}" ] && return 0
      echo "$r" | grep -q 'flags: qr aa' && echo "$r" | grep -q 'ANSWER: [1-9]' && return 0
    fi
    sleep 0.01
  done; return 1; }
up(){
 C=$1; P=floorb-c$C; D=$B/c$C; rm -rf $D; mkdir -p $D/{aroot,broot,tld,tld2,sldk,sldn,resb,resu}
 T0=$(now); : > $D/pids; : > $D/times
 ip netns add $P-sw; ip -n $P-sw link add br0 type bridge; ip -n $P-sw link set br0 up
 for n in $NODES; do nm=${n%%:*}; a=${n##*:}
   ip netns add $P-$nm
   ip -n $P-sw link add v-$nm type veth peer name eth0 netns $P-$nm
   ip -n $P-sw link set v-$nm master br0 up
   ip -n $P-$nm addr add 198.18.0.$a/24 dev eth0; ip -n $P-$nm link set eth0 up; ip -n $P-$nm link set lo up
 done
 echo "netns $(el $T0)" >> $D/times
 # ---- zone data (what dnslab derives for dns-basics, IPv4 only); secondaries get none: they transfer
 ROOT='$ORIGIN .
$TTL 3600
. 3600 IN SOA a.root-servers.test. hostmaster.root-servers.test. 1 3600 600 604800 60
. IN NS a.root-servers.test.
. IN NS b.root-servers.test.
test. IN NS ns1.nic.test.
test. IN NS ns2.nic.test.
a.root-servers.test. IN A 198.18.0.1
b.root-servers.test. IN A 198.18.0.2
ns1.nic.test. IN A 198.18.0.3
ns2.nic.test. IN A 198.18.0.4'
 echo "$ROOT" > $D/aroot/root.zone; echo "$ROOT" > $D/broot/root.zone
 cat > $D/tld/test.zone <<Z
\$ORIGIN test.
\$TTL 3600
@ 3600 IN SOA ns1.nic.test. hostmaster.nic.test. 1 3600 600 604800 60
@ IN NS ns1.nic.test.
@ IN NS ns2.nic.test.
example IN NS ns1.example.test.
example IN NS ns1.lab.test.
lab IN NS ns1.lab.test.
lab IN NS ns1.example.test.
a.root-servers IN A 198.18.0.1
b.root-servers IN A 198.18.0.2
ns1.example IN A 198.18.0.5
ns1.lab IN A 198.18.0.6
ns1.nic IN A 198.18.0.3
ns2.nic IN A 198.18.0.4
nic IN TXT "the registry of test."
Z
 cat > $D/sldk/example.test.zone <<Z
\$ORIGIN example.test.
\$TTL 3600
@ 3600 IN SOA ns1 hostmaster 1 3600 600 604800 60
@ IN NS ns1
@ IN NS ns1.lab.test.
ns1 IN A 198.18.0.5
www IN A 192.0.2.80
www IN AAAA 2001:db8:2::80
ftp IN CNAME www
@ IN TXT "v=spf1 -all"
Z
 cat > $D/sldn/lab.test.zone <<Z
\$ORIGIN lab.test.
\$TTL 3600
@ 3600 IN SOA ns1 hostmaster 1 3600 600 604800 60
@ IN NS ns1
@ IN NS ns1.example.test.
ns1 IN A 198.18.0.6
www IN A 203.0.113.10
www IN AAAA 2001:db8:113::10
mail IN A 203.0.113.25
@ IN MX 10 mail
Z
 # ---- configs
 nsdconf(){ # dir addr  (the server part; zones are appended)
  cat > $1/nsd.conf <<Z
server:
  server-count: 1
  ip-address: $2
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "$1"
  database: ""
  pidfile: "$1/nsd.pid"
  xfrdfile: "$1/xfrd.state"
  zonelistfile: "$1/zone.list"
  xfrdir: "$1"
  verbosity: 1
  rrl-size: 1000
remote-control:
  control-enable: no
Z
 }
 NSD_TIMERS='  min-refresh-time: 2
  max-refresh-time: 5
  min-retry-time: 1
  max-retry-time: 5'
 knotconf(){ # dir addr  (the server part and template; remotes, acls and zones are appended)
  cat > $1/knot.conf <<Z
server:
  rundir: "$1"
  listen: $2@53
  udp-workers: 1
  tcp-workers: 1
  background-workers: 1
log:
  - target: stderr
    any: info
database:
  storage: "$1"
template:
  - id: default
    storage: "$1"
    zonefile-sync: -1
    journal-content: none
    refresh-min-interval: 2
    refresh-max-interval: 5
    retry-min-interval: 1
    retry-max-interval: 5
Z
 }
 nsdconf $D/aroot 198.18.0.1
 cat >> $D/aroot/nsd.conf <<Z
zone:
  name: "."
  zonefile: "$D/aroot/root.zone"
Z
 knotconf $D/broot 198.18.0.2
 cat >> $D/broot/knot.conf <<Z
zone:
  - domain: "."
    file: "$D/broot/root.zone"
Z
 cat > $D/tld/named.conf <<Z
options { directory "$D/tld"; listen-on { 198.18.0.3; }; listen-on-v6 { none; };
 recursion no; pid-file "$D/tld/named.pid"; session-keyfile "$D/tld/session.key";
 managed-keys-directory "$D/tld"; dnssec-validation no; allow-transfer { none; }; notify explicit; };
controls { };
key "xfr-test" { algorithm hmac-sha256; secret "$TSIG"; };
zone "test" { type primary; file "$D/tld/test.zone";
 also-notify { 198.18.0.4 key "xfr-test"; }; allow-transfer { key "xfr-test"; }; };
Z
 nsdconf $D/tld2 198.18.0.4
 cat >> $D/tld2/nsd.conf <<Z
key:
  name: "xfr-test"
  algorithm: hmac-sha256
  secret: "$TSIG"
zone:
  name: "test."
  zonefile: "$D/tld2/test.zone"
  allow-notify: 198.18.0.3 xfr-test
  request-xfr: 198.18.0.3 xfr-test
$NSD_TIMERS
Z
 knotconf $D/sldk 198.18.0.5
 cat >> $D/sldk/knot.conf <<Z
remote:
  - id: sldn
    address: 198.18.0.6@53
acl:
  - id: xfr-to-sldn
    address: [198.18.0.6]
    action: transfer
  - id: notify-from-sldn
    address: [198.18.0.6]
    action: notify
zone:
  - domain: "example.test."
    file: "$D/sldk/example.test.zone"
    notify: [sldn]
    acl: xfr-to-sldn
  - domain: "lab.test."
    file: "$D/sldk/lab.test.zone"
    master: sldn
    journal-content: changes
    acl: notify-from-sldn
Z
 nsdconf $D/sldn 198.18.0.6
 cat >> $D/sldn/nsd.conf <<Z
zone:
  name: "lab.test."
  zonefile: "$D/sldn/lab.test.zone"
  notify: 198.18.0.5 NOKEY
  provide-xfr: 198.18.0.5 NOKEY
zone:
  name: "example.test."
  zonefile: "$D/sldn/example.test.zone"
  allow-notify: 198.18.0.5 NOKEY
  request-xfr: 198.18.0.5 NOKEY
$NSD_TIMERS
Z
 HINTS='. 3600000 NS a.root-servers.test.
a.root-servers.test. 3600000 A 198.18.0.1
. 3600000 NS b.root-servers.test.
b.root-servers.test. 3600000 A 198.18.0.2'
 echo "$HINTS" > $D/resb/root.hints; echo "$HINTS" > $D/resu/root.hints
 cat > $D/resb/named.conf <<Z
options { directory "$D/resb"; listen-on { 198.18.0.7; }; listen-on-v6 { none; };
 recursion yes; allow-recursion { 198.18.0.0/15; }; pid-file "$D/resb/named.pid";
 session-keyfile "$D/resb/session.key"; managed-keys-directory "$D/resb"; dnssec-validation no; };
controls { };
zone "." { type hint; file "$D/resb/root.hints"; };
Z
 cat > $D/resu/unbound.conf <<Z
server:
  num-threads: 1
  interface: 198.18.0.8
  access-control: 198.18.0.0/15 allow
  do-ip6: no
  username: ""
  chroot: ""
  directory: "$D/resu"
  pidfile: "$D/resu/unbound.pid"
  root-hints: "$D/resu/root.hints"
  use-syslog: no
  logfile: ""
  verbosity: 1
  module-config: "iterator"
  local-zone: "example.test." nodefault
  local-zone: "lab.test." nodefault
  local-zone: "test." nodefault
remote-control:
  control-enable: no
Z
 echo "files $(el $T0)" >> $D/times
 # ---- daemons: all started at once, each with its own readiness loop
 start(){ # node name addr "zone ..." | CH:qname -- argv...   (a zone: its SOA with authority; CH: a TXT CH answer)
  local nm=$1 what=$2 addr=$3 q=$4 z; shift 5; local ts=$(now)
  ip netns exec $P-$nm "$@" > $D/$nm/log 2>&1 & echo "$what $!" >> $D/pids
  for z in $q; do
    case $z in
      CH:*) waitq $P-cli $addr ${z#CH:} TXT CH ;;
      *) waitq $P-cli $addr $z SOA IN aa ;;
    esac || { echo "${what}_NOT_READY $z $(el $ts)" >> $D/times; return 1; }
  done
  echo "${what}_ready $(el $ts)" >> $D/times; }
 start aroot nsd-root 198.18.0.1 . -- nsd -d -c $D/aroot/nsd.conf &
 start broot knot-root 198.18.0.2 . -- knotd -c $D/broot/knot.conf &
 start tld named-tld 198.18.0.3 test. -- named -f -4 -n 1 -c $D/tld/named.conf &
 start tld2 nsd-tld2 198.18.0.4 test. -- nsd -d -c $D/tld2/nsd.conf &
 start sldk knot-sld 198.18.0.5 "example.test. lab.test." -- knotd -c $D/sldk/knot.conf &
 start sldn nsd-sld 198.18.0.6 "lab.test. example.test." -- nsd -d -c $D/sldn/nsd.conf &
 start resb named-res 198.18.0.7 CH:version.bind -- named -f -4 -n 1 -c $D/resb/named.conf &
 start resu unbound 198.18.0.8 CH:version.server -- unbound -d -c $D/resu/unbound.conf &
 wait
 echo "daemons_ready $(el $T0)" >> $D/times
 local i r ok=
 for i in $(seq 1 1000); do
   r=$(ip netns exec $P-cli dig +time=2 +tries=1 @198.18.0.8 www.example.test A 2>/dev/null)
   if echo "$r" | grep -q 'status: NOERROR' && echo "$r" | grep -q 192.0.2.80; then ok=1; break; fi; sleep 0.01; done
 if [ -n "$ok" ]; then echo "FIRST_ANSWER $(el $T0)" >> $D/times; else echo "FIRST_ANSWER_NOT_READY $(el $T0)" >> $D/times; fi
 echo "$r" > $D/answer.txt
 if grep -q NOT_READY $D/times; then echo "floor-dns-basics.sh: copy $C not ready:" >&2; grep NOT_READY $D/times >&2; return 1; fi
}
alive(){ # pid -> true while it runs; a zombie is dead (PID 1 here may reap exited daemons only every second or so)
  local s; read -r s 2>/dev/null < /proc/$1/stat || return 1; s=${s##*) }; [ "${s%% *}" != Z ]; }
down(){
 C=$1; P=floorb-c$C; D=$B/c$C; T0=$(now)
 local pids p n i ns=""
 for n in $NODES sw; do n=${n%%:*}; [ -e /run/netns/$P-$n ] && ns="$ns $P-$n"; done
 # the recorded daemons plus every process inside our namespaces (NSD's children), by PID
 pids="$(awk '{print $2}' $D/pids 2>/dev/null) $(for n in $ns; do ip netns pids $n; done)"
 pids=$(echo $pids)
 [ -n "$pids" ] && kill $pids 2>/dev/null
 for p in $pids; do for i in $(seq 1 500); do alive $p || break; sleep 0.01; done; alive $p && kill -9 $p; done
 for n in $ns; do
   p=$(ip netns pids $n 2>/dev/null); [ -n "$p" ] && kill -9 $p 2>/dev/null
   ip netns del $n 2>/dev/null
 done
 rm -rf $D; rmdir $B 2>/dev/null
 echo "teardown $(el $T0)"
}
once(){ # one measured run: up copy 0, print its times, take it down
 up 0; cat "$B/c0/times"; down 0; }
"$@"
