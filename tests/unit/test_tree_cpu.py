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
    # the child says when it has burnt its CPU, then only sleeps
    script = BURN + "\nprint('burnt', flush=True)\ntime.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", script, "0.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "burnt"
        with TreeCpu(interval=0.02) as meter:
            time.sleep(0.2)
        assert meter.seconds < 0.25
    finally:
        child.kill()
        child.wait()
