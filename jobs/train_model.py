"""spark-submit entry point: `spark-anomaly train` (see README). Thin by design."""

import os
import sys

try:
    from spark_anomaly.cli import main
except ImportError:  # running from a source checkout without the package installed
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from spark_anomaly.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
