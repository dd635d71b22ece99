#!/bin/sh
# A task that moves itself into a memory cgroup created outside the scope
# (OUTSIDE, made by the harness before the recording) and allocates there: its
# charges go to OUTSIDE, not to the scope.
# usage: move-out.sh OUTSIDE MEM PAGES
set -e
echo $$ > "$1/cgroup.procs"
exec "$2" anon "$3"
