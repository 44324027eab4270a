# spark-anomaly: the two commands a new user needs are `make demo` and `make test`.
# Every target installs what it needs first (idempotent), and stops what it started.
SHELL := /bin/bash
PY := .venv/bin/python
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYTHONUNBUFFERED := 1
TEST_KAFKA_PORT ?= 19092
TEST_KAFKA_HOME ?= var/kafka-test

.PHONY: dist setup demo test unit integration lint format evaluate bench bench-quick kafka-start kafka-stop clean

setup:
	@scripts/setup.sh

# Produce history, train, detect on live traffic for a bounded time, show detected vs injected.
demo: setup
	@scripts/demo.sh

# Unit and integration tests against a real broker (started here on its own port, stopped after).
test: setup
	@KAFKA_PORT=$(TEST_KAFKA_PORT) KAFKA_HOME_DIR=$(TEST_KAFKA_HOME) KAFKA_WIPE=1 scripts/kafka.sh start
	@set -o pipefail; KAFKA_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT) $(PY) -m pytest -q $(PYTEST_ARGS); rc=$$?; \
	  KAFKA_PORT=$(TEST_KAFKA_PORT) KAFKA_HOME_DIR=$(TEST_KAFKA_HOME) scripts/kafka.sh stop; exit $$rc

unit: setup
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

lint: setup
	.venv/bin/ruff check src jobs scripts tests
	.venv/bin/ruff format --check src jobs scripts tests

format: setup
	.venv/bin/ruff format src jobs scripts tests
	.venv/bin/ruff check --fix src jobs scripts tests

kafka-start: setup
	@scripts/kafka.sh start

kafka-stop:
	@scripts/kafka.sh stop

clean:
	rm -rf var/delta var/checkpoints var/model var/history var/demo reports

# Performance benchmarks (docs/benchmarks-perf.md: catch-up throughput, latency at fixed rates,
# training on 10M/100M-record Delta histories, model scale, soak) against a broker of their own on
# port 29092, stopped again however the run ends; then BENCHMARKS.md is re-assembled.
# bench-quick: ~10 min (1M events, 20 s per latency rate, 2-min soak); bench: ~1 h (30-min soak).
BENCH_KAFKA = KAFKA_PORT=29092 KAFKA_HOME_DIR=var/kafka-bench
bench bench-quick: setup
	@trap '$(BENCH_KAFKA) scripts/kafka.sh stop' EXIT; \
	  $(BENCH_KAFKA) KAFKA_WIPE=1 scripts/kafka.sh start && \
	  $(PY) scripts/bench.py $(if $(filter bench-quick,$@),--quick) --bootstrap 127.0.0.1:29092 $(BENCH_ARGS) && \
	  $(PY) scripts/render_benchmarks.py

# Detection quality on the NAB layout (default: the development split beside this repo).
NAB_DATA ?= ../shared/nab
EVAL_OUT ?= var/evaluate
EVAL_DETECTORS = zscore zscore-best normal normal-best ema ema-best robust robust-best kmeans kmeans-best cad cad-best ensemble-cad-normal ensemble-zscore-normal ensemble-zscore-normal-delta ensemble-range-normal-delta ensemble-range-normal-delta-novelty ensemble-range-delta-novelty-knn ensemble-record-delta-novelty-knn recommended
evaluate: setup
	$(PY) jobs/evaluate.py --data $(NAB_DATA) --out $(EVAL_OUT)/benchmark --oos \
	  $(addprefix --detector ,$(EVAL_DETECTORS)) --thresholds-out $(EVAL_OUT)/benchmark/thresholds-all.json
	$(PY) scripts/render_benchmarks.py

# A wheel to ship with spark-submit --py-files on a cluster.
dist: setup
	rm -rf dist && .venv/bin/pip wheel -q --no-deps -w dist .
