#!/usr/bin/env bash
# Fetches the JVM jars with Maven into var/jars/{spark,kafka}. Idempotent (a stamp per pom).
set -euo pipefail
cd "$(dirname "$0")/.."
fetch() {  # pom, output dir
  local pom=$1 out=$2 stamp
  stamp="$out/.stamp-$(sha1sum "$pom" | cut -c1-12)"
  [ -f "$stamp" ] && return 0
  rm -rf "$out"; mkdir -p "$out"
  mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$PWD/$out"
  touch "$stamp"
}
fetch scripts/maven/kafka-broker.pom.xml var/jars/kafka
fetch scripts/maven/spark-jars.pom.xml var/jars/spark
# Drop what the pyspark wheel already ships (same artifact, any version): two copies of a class
# on the classpath is how subtle failures start.
pyjars=$(.venv/bin/python -c 'import pyspark, os; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')
for j in var/jars/spark/*.jar; do
  base=$(basename "$j" .jar); artifact=${base%-[0-9]*}
  if compgen -G "$pyjars/$artifact-[0-9]*.jar" >/dev/null; then rm -f "$j"; fi
done
