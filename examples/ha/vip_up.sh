#!/bin/sh
# if_up_command for [coordination]: this pooler became the leader, so it
# takes the virtual address clients connect to.
#   if_up_command = "/path/to/examples/ha/vip_up.sh 10.0.0.100/24 eth0"
#   arping_command = "arping -U -c 3 -I eth0 10.0.0.100"
# Needs CAP_NET_ADMIN (run the pooler as root, or grant it with setcap or a
# systemd AmbientCapabilities= line). Adding an address already there is
# not an error: a leader that lost and regained its lease runs this again.
set -eu
addr=${1:?usage: vip_up.sh ADDRESS/PREFIX DEVICE}
dev=${2:?usage: vip_up.sh ADDRESS/PREFIX DEVICE}
if ip -o addr show dev "$dev" | grep -q " ${addr%/*}/"; then
  echo "vip_up: $addr already on $dev"
  exit 0
fi
ip addr add "$addr" dev "$dev"
echo "vip_up: $addr added to $dev"
