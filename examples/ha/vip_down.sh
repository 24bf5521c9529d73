#!/bin/sh
# if_down_command for [coordination]: this pooler is no longer the leader
# (its lease was lost, or it is shutting down), so it gives the virtual
# address up for the next leader.
#   if_down_command = "/path/to/examples/ha/vip_down.sh 10.0.0.100/24 eth0"
# Removing an address that is not there is not an error.
set -eu
addr=${1:?usage: vip_down.sh ADDRESS/PREFIX DEVICE}
dev=${2:?usage: vip_down.sh ADDRESS/PREFIX DEVICE}
if ! ip -o addr show dev "$dev" | grep -q " ${addr%/*}/"; then
  echo "vip_down: $addr not on $dev"
  exit 0
fi
ip addr del "$addr" dev "$dev"
echo "vip_down: $addr removed from $dev"
