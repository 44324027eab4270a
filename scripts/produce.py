#!/usr/bin/env python3
"""Synthetic sensor readings with labelled anomalies, to Kafka or JSON-lines files.

Thin CLI over spark_anomaly.loadgen (run `scripts/produce.py -h`). Examples:
  .venv/bin/python scripts/produce.py history --hours 24 --out-dir var/data/history
  .venv/bin/python scripts/produce.py history --count 3000000 --topic sensor-readings
  .venv/bin/python scripts/produce.py live --rate 2000 --seconds 60 --bad-rate 0.005
  .venv/bin/python scripts/produce.py history --count 100000 --topic metrics --format openmetrics
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))  # works without `pip install -e`

from spark_anomaly.loadgen import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
