"""The benchmark's CPU meter: what the process tree used inside the block, ended processes included."""

from __future__ import annotations

import subprocess
import sys
import time

from spark_anomaly.benchmark import TreeCpu

# burns CPU until the process itself has used `s` CPU-seconds (whatever the machine's speed), then exits
BURN = "import sys, time\nwhile time.process_time() < float(sys.argv[1]): pass"


# starts BURN and exits as soon as it has ended, without reaping it: the burner's CPU then goes to
# whoever adopts it (init), not to its parent's reaped-children times, and a sum of the tree taken
# at the block's two ends (what the meter replaced) misses all of it
ORPHAN = f"""
import os, subprocess, sys, time
BURN = {BURN!r}
p = subprocess.Popen([sys.executable, "-c", BURN, "0.5"])
while True:
    try:
        with open(f"/proc/{{p.pid}}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
    except OSError:
        break
    time.sleep(0.01)
os._exit(0)
"""


def test_counts_a_grandchild_reaped_outside_the_tree():
    with TreeCpu(interval=0.02) as meter:
        subprocess.run([sys.executable, "-c", ORPHAN], check=True)
    assert meter.seconds >= 0.3


def test_counts_a_child_that_ended_inside_the_block():
    with TreeCpu(interval=0.02) as meter:
        subprocess.run([sys.executable, "-c", BURN, "0.5"], check=True)
    # the child's last interval may go unseen; everything before it is counted
    assert meter.seconds >= 0.3


def test_leaves_out_cpu_used_before_the_block():
    child = subprocess.Popen([sys.executable, "-c", BURN + "\ntime.sleep(30)", "0.5"])
    try:
        while True:  # until the child has burnt its CPU and sleeps
            with open(f"/proc/{child.pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            if fields[0] == "S" and int(fields[11]) + int(fields[12]) > 0:
                break
            time.sleep(0.05)
        with TreeCpu(interval=0.02) as meter:
            time.sleep(0.2)
        assert meter.seconds < 0.25
    finally:
        child.kill()
        child.wait()
