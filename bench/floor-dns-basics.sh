#!/bin/bash
# The floor for dnslab's dns-basics lab: the same 8 nodes started by a bare script in network
# namespaces floorb-cC-*, no orchestration. Modelled on /work/shared/bench/floor-lab.sh.
#   NSD root + Knot root (both serve "."), BIND TLD test., Knot example.test., NSD lab.test.,
#   BIND resolver, Unbound resolver, client.
# usage: floor-dns-basics.sh up C | down C | once      (times go to $FLOOR_DIR/cC/times)
# IPv4 only (dnslab's dns-basics also gives every node an IPv6 address); addresses 198.18.0.0/24,
# the same in every copy C (each copy has its own namespaces and bridge).
# NSD gets rrl-size: 1000 as in dnslab's nsd.conf.j2 (RRL on, small table; the default is most of its memory).
# Needs root, bind9 bind9-dnsutils knot nsd unbound bc.
# Namespaces floorb-cC-{sw,aroot,broot,tld,sldk,sldn,resb,resu,cli}; the bridge lives inside floorb-cC-sw.
# `down C` kills only the PIDs recorded by `up C` (then whatever is still inside its namespaces,
# by PID), deletes its namespaces and its run dir.
set -u
B=${FLOOR_DIR:-/tmp/dnslab-floorb}
NODES="aroot:1 broot:2 tld:3 sldk:4 sldn:5 resb:6 resu:7 cli:10"
now(){ date +%s.%N; }
el(){ echo "$(now) - $1" | bc; }
waitq(){ # ns server qname qtype [class]  -> loop until NOERROR
  local i
  for i in $(seq 1 3000); do
    if ip netns exec $1 dig +time=1 +tries=1 +norec @$2 $3 $4 ${5:-IN} 2>/dev/null | grep -q 'status: NOERROR'; then return 0; fi
    sleep 0.01
  done; return 1; }
up(){
 C=$1; P=floorb-c$C; D=$B/c$C; rm -rf $D; mkdir -p $D/{aroot,broot,tld,sldk,sldn,resb,resu}
 T0=$(now); : > $D/pids; : > $D/times
 ip netns add $P-sw; ip -n $P-sw link add br0 type bridge; ip -n $P-sw link set br0 up
 for n in $NODES; do nm=${n%%:*}; a=${n##*:}
   ip netns add $P-$nm
   ip -n $P-sw link add v-$nm type veth peer name eth0 netns $P-$nm
   ip -n $P-sw link set v-$nm master br0 up
   ip -n $P-$nm addr add 198.18.0.$a/24 dev eth0; ip -n $P-$nm link set eth0 up; ip -n $P-$nm link set lo up
 done
 echo "netns $(el $T0)" >> $D/times
 # ---- zone data (what dnslab derives for dns-basics, IPv4 only)
 ROOT='$ORIGIN .
$TTL 3600
. 3600 IN SOA a.root-servers.test. hostmaster. 1 3600 600 86400 60
. IN NS a.root-servers.test.
. IN NS b.root-servers.test.
test. IN NS ns1.nic.test.
a.root-servers.test. IN A 198.18.0.1
b.root-servers.test. IN A 198.18.0.2
ns1.nic.test. IN A 198.18.0.3'
 echo "$ROOT" > $D/aroot/root.zone; echo "$ROOT" > $D/broot/root.zone
 cat > $D/tld/test.zone <<Z
\$ORIGIN test.
\$TTL 3600
@ 3600 IN SOA ns1.nic.test. hostmaster.test. 1 3600 600 86400 60
@ IN NS ns1.nic.test.
example IN NS ns1.example.test.
lab IN NS ns1.lab.test.
a.root-servers IN A 198.18.0.1
b.root-servers IN A 198.18.0.2
ns1.example IN A 198.18.0.4
ns1.lab IN A 198.18.0.5
ns1.nic IN A 198.18.0.3
nic IN TXT "the registry of test."
Z
 cat > $D/sldk/example.test.zone <<Z
\$ORIGIN example.test.
\$TTL 3600
@ 3600 IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 198.18.0.4
www IN A 192.0.2.80
www IN AAAA 2001:db8:2::80
ftp IN CNAME www
@ IN TXT "v=spf1 -all"
Z
 cat > $D/sldn/lab.test.zone <<Z
\$ORIGIN lab.test.
\$TTL 3600
@ 3600 IN SOA ns1 hostmaster 1 3600 600 86400 60
@ IN NS ns1
ns1 IN A 198.18.0.5
www IN A 203.0.113.10
www IN AAAA 2001:db8:113::10
mail IN A 203.0.113.25
@ IN MX 10 mail
Z
 # ---- configs
 nsdconf(){ # dir addr zone file
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
zone:
  name: "$3"
  zonefile: "$1/$4"
Z
 }
 knotconf(){ # dir addr zone file
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
zone:
  - domain: "$3"
    file: "$1/$4"
Z
 }
 nsdconf $D/aroot 198.18.0.1 . root.zone
 knotconf $D/broot 198.18.0.2 . root.zone
 knotconf $D/sldk 198.18.0.4 example.test. example.test.zone
 nsdconf $D/sldn 198.18.0.5 lab.test. lab.test.zone
 cat > $D/tld/named.conf <<Z
options { directory "$D/tld"; listen-on { 198.18.0.3; }; listen-on-v6 { none; };
 recursion no; pid-file "$D/tld/named.pid"; session-keyfile "$D/tld/session.key";
 managed-keys-directory "$D/tld"; dnssec-validation no; };
controls { };
zone "test" { type primary; file "$D/tld/test.zone"; };
Z
 HINTS='. 3600000 NS a.root-servers.test.
a.root-servers.test. 3600000 A 198.18.0.1
. 3600000 NS b.root-servers.test.
b.root-servers.test. 3600000 A 198.18.0.2'
 echo "$HINTS" > $D/resb/root.hints; echo "$HINTS" > $D/resu/root.hints
 cat > $D/resb/named.conf <<Z
options { directory "$D/resb"; listen-on { 198.18.0.6; }; listen-on-v6 { none; };
 recursion yes; allow-recursion { 198.18.0.0/15; }; pid-file "$D/resb/named.pid";
 session-keyfile "$D/resb/session.key"; managed-keys-directory "$D/resb"; dnssec-validation no; };
controls { };
zone "." { type hint; file "$D/resb/root.hints"; };
Z
 cat > $D/resu/unbound.conf <<Z
server:
  num-threads: 1
  interface: 198.18.0.7
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
  local-zone: "test." nodefault
remote-control:
  control-enable: no
Z
 echo "files $(el $T0)" >> $D/times
 # ---- daemons: all started at once, each with its own readiness loop
 start(){ # node name addr qname qtype class -- argv...
  local nm=$1 what=$2 addr=$3 q=$4 t=$5 c=$6; shift 7; local ts=$(now)
  ip netns exec $P-$nm "$@" > $D/$nm/log 2>&1 & echo "$what $!" >> $D/pids
  waitq $P-cli $addr $q $t $c && echo "${what}_ready $(el $ts)" >> $D/times; }
 start aroot nsd-root 198.18.0.1 . SOA IN -- nsd -d -c $D/aroot/nsd.conf &
 start broot knot-root 198.18.0.2 . SOA IN -- knotd -c $D/broot/knot.conf &
 start tld named-tld 198.18.0.3 test. SOA IN -- named -f -4 -n 1 -c $D/tld/named.conf &
 start sldk knot-sld 198.18.0.4 example.test. SOA IN -- knotd -c $D/sldk/knot.conf &
 start sldn nsd-sld 198.18.0.5 lab.test. SOA IN -- nsd -d -c $D/sldn/nsd.conf &
 start resb named-res 198.18.0.6 version.bind TXT CH -- named -f -4 -n 1 -c $D/resb/named.conf &
 start resu unbound 198.18.0.7 version.server TXT CH -- unbound -d -c $D/resu/unbound.conf &
 wait
 echo "daemons_ready $(el $T0)" >> $D/times
 local i r
 for i in $(seq 1 1000); do
   r=$(ip netns exec $P-cli dig +time=2 +tries=1 @198.18.0.7 www.example.test A 2>/dev/null)
   if echo "$r" | grep -q 'status: NOERROR' && echo "$r" | grep -q 192.0.2.80; then break; fi; sleep 0.01; done
 echo "FIRST_ANSWER $(el $T0)" >> $D/times
 echo "$r" > $D/answer.txt
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
