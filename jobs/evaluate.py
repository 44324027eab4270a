"""Evaluate detectors on labelled series (NAB layout). Thin entry point: all logic is in the library.

python jobs/evaluate.py --data <NAB root> --detector <name> --out <dir>
spark-submit jobs/evaluate.py ...   (works too; evaluation needs no Spark)
"""

import sys
from pathlib import Path

try:
    from spark_anomaly.evaluation.cli import main
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from spark_anomaly.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
