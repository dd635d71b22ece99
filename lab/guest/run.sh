#!/bin/sh
# chargetrace lab: the guest job (copied into the share as /lab/run.sh).
# /lab/job.env sets MODE (plain|record), TRACE (file name), RINGBUF_MB, and optionally WORKLOAD
# (a shell command run in /lab/work instead of hmm-tests) and MEMORY_MAX (bytes, written to the
# command's own memcg before it starts), HMM_TESTS_ARGS (harness options, e.g. -T to leave a test out).
# Every result is a file in /lab/out; the host parses them after power-off.
set -u
. /lab/job.env
cd /lab/out
stamp() { echo "$1 $(cut -d' ' -f1 /proc/uptime)" >> /lab/out/steps.txt; }
: > steps.txt
stamp start
uname -r > uname.txt
cat /sys/kernel/mm/transparent_hugepage/enabled > thp.txt 2>&1
insmod /lab/test_hmm.ko
echo $? > insmod.rc
# test_hmm registers a char device region "HMM_DMIRROR"; before it created its own device nodes
# (5.10 and older), the kernel's test_hmm.sh made them with mknod from /proc/devices: do the same.
if [ ! -e /dev/hmm_dmirror0 ]; then
    major=$(awk '$2 == "HMM_DMIRROR" {print $1}' /proc/devices)
    [ -n "$major" ] && mknod /dev/hmm_dmirror0 c "$major" 0 && mknod /dev/hmm_dmirror1 c "$major" 1
fi
ls -l /dev/hmm_dmirror* > devices.txt 2>&1
stamp insmod
cat /sys/fs/cgroup/cgroup.controllers > controllers.txt
# A slow guest (TCG) is opaque from the host: leave a process snapshot every 30 s.
( while sleep 30; do echo "== $(cut -d' ' -f1 /proc/uptime)"; ps -eo etime,time,pcpu,args --sort=-pcpu | head -6; done ) \
    > /lab/out/ps.txt 2>&1 &
MONITOR=$!
# hmm-tests creates O_TMPFILE files in /tmp (tmpfs); run it from there.
cd /tmp
export PYTHONUNBUFFERED=1
# This run's chargetrace (lab/run.py _share_package) before the rootfs' shared install.
[ -d /lab/py/chargetrace ] && export PYTHONPATH=/lab/py
# BCC unpacks /sys/kernel/kheaders.tar.xz into a fresh temp dir for EVERY
# compile (tens of seconds of xz under TCG); unpack it once and point BCC at it.
if [ -e /sys/kernel/kheaders.tar.xz ]; then
    mkdir -p /tmp/kheaders && tar -xf /sys/kernel/kheaders.tar.xz -C /tmp/kheaders \
        && export BCC_KERNEL_SOURCE=/tmp/kheaders
fi
stamp kheaders
WORKLOAD=${WORKLOAD:-}
MEMORY_MAX=${MEMORY_MAX:-}
NAME=hmm-tests
HMM_TESTS_ARGS=${HMM_TESTS_ARGS:-}
CMD="/lab/hmm-tests $HMM_TESTS_ARGS"
if [ -n "$WORKLOAD" ]; then
    NAME=workload
    CMD=$WORKLOAD
    cd /lab/work
fi
export CMD MEMORY_MAX
if [ "$MODE" = record ]; then
    # Which probe observes each event on this kernel and why (it fills the recorder's trial cache,
    # so the recording below compiles no trial of its own).
    chargetrace probes > /lab/out/probes.txt 2>&1
    stamp probes
fi
# The wrapper runs inside the recorded memcg: it sets that memcg's limit, runs the command, and
# when the command has ended copies the memcg's memory.events (OOM, max, high events) to
# /lab/out/memory.events: the recorder removes the memcg after settling, so nobody else can. It
# stays out of the OOM killer's way (-1000; the command gets 0 back), because a killed wrapper
# loses the events and, under a limit with nothing else killable, it would be the victim. The
# events are read with the shell's own `read` (no fork: a new charge in a memcg still at its limit).
WRAP='cg="/sys/fs/cgroup$(sed -n "s/^0:://p" /proc/self/cgroup)"
if [ -n "$MEMORY_MAX" ]; then echo "$MEMORY_MAX" > "$cg/memory.max" || exit 125; fi
echo -1000 > /proc/self/oom_score_adj
( echo 0 > /proc/self/oom_score_adj; exec sh -c "$CMD" )
rc=$?
while read -r line; do echo "$line"; done < "$cg/memory.events" > /lab/out/memory.events
exit $rc'
if [ "$MODE" = record ] && [ -z "$WORKLOAD" ] && [ -z "$MEMORY_MAX" ]; then
    # Plain hmm-tests: the recorded command is hmm-tests itself (no wrapper shell in the scope).
    # shellcheck disable=SC2086 # HMM_TESTS_ARGS is a list of options
    chargetrace record -o "/lab/out/$TRACE" --ringbuf-mb "$RINGBUF_MB" -- /lab/hmm-tests $HMM_TESTS_ARGS \
        > "/lab/out/$NAME.log" 2> /lab/out/record.err
    echo $? > "/lab/out/$NAME.rc"
elif [ "$MODE" = record ]; then
    chargetrace record -o "/lab/out/$TRACE" --ringbuf-mb "$RINGBUF_MB" -- sh -c "$WRAP" \
        > "/lab/out/$NAME.log" 2> /lab/out/record.err
    echo $? > "/lab/out/$NAME.rc"
else
    sh -c "$CMD" > "/lab/out/$NAME.log" 2>&1
    echo $? > "/lab/out/$NAME.rc"
fi
kill $MONITOR 2>/dev/null
cd /lab/out
stamp hmm-tests
dmesg > dmesg.txt
stamp done
