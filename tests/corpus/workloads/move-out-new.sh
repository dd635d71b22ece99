#!/bin/sh
# A child process that moves itself into a memory cgroup made outside the
# scope *during* the recording (a sibling at the hierarchy's root, created by
# this script) and allocates there; the script waits for it and removes the
# cgroup. The recorder can follow it: the cgroup did not exist before arming.
# usage: move-out-new.sh MEM PAGES
set -e
. "$(dirname "$0")/lib.sh"
memcg_init
OUT=$MOUNT/chargetrace-corpus-new-$$
mkdir "$OUT"
OUT=$OUT MEM=$1 PAGES=$2 sh -c 'echo $$ > "$OUT/cgroup.procs"; exec "$MEM" anon "$PAGES"'
# the exited task may take a moment to leave the cgroup
for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$OUT" 2>/dev/null && exit 0; sleep 0.2; done
rmdir "$OUT"
