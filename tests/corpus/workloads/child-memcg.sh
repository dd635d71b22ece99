#!/bin/sh
# A child memcg created and removed inside the scope (the pattern of the
# kernel's tools/testing/selftests/cgroup/test_memcontrol.c): mkdir a child of
# the shell's own memcg, run a process in it that touches anon memory and
# writes and deletes a file, wait for it, rmdir the child.
# usage: child-memcg.sh MEM PAGES FILE
set -e
. "$(dirname "$0")/lib.sh"
memcg_init
make_child child
MEM=$1 PAGES=$2 FILE=$3 CHILD=$MEMCG/child sh -c '
    echo $$ > "$CHILD/cgroup.procs"
    "$MEM" file "$FILE" 8 delete
    exec "$MEM" anon "$PAGES"'
rmdir "$MEMCG/child"
