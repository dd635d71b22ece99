#!/bin/sh
# chargetrace lab: the guest job (copied into the share as /lab/run.sh).
# /lab/job.env sets MODE (plain|record), TRACE (file name), RINGBUF_MB.
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
# BCC unpacks /sys/kernel/kheaders.tar.xz into a fresh temp dir for EVERY
# compile (tens of seconds of xz under TCG); unpack it once and point BCC at it.
if [ -e /sys/kernel/kheaders.tar.xz ]; then
    mkdir -p /tmp/kheaders && tar -xf /sys/kernel/kheaders.tar.xz -C /tmp/kheaders \
        && export BCC_KERNEL_SOURCE=/tmp/kheaders
fi
stamp kheaders
if [ "$MODE" = record ]; then
    chargetrace record -o "/lab/out/$TRACE" --ringbuf-mb "$RINGBUF_MB" -- /lab/hmm-tests \
        > /lab/out/hmm-tests.log 2> /lab/out/record.err
    echo $? > /lab/out/hmm-tests.rc
else
    /lab/hmm-tests > /lab/out/hmm-tests.log 2>&1
    echo $? > /lab/out/hmm-tests.rc
fi
kill $MONITOR 2>/dev/null
cd /lab/out
stamp hmm-tests
dmesg > dmesg.txt
stamp done
