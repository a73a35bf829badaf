# streamwarden: `make demo` runs the platform end to end, `make test` runs the whole test suite.
# Both install what they need first: .venv (Python packages) and .jvm (JVM artifacts, via Maven).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
JVM_STAMP := .jvm/.fetched
JVM_POMS  := infra/jvm/pom.xml $(wildcard infra/jvm/*/pom.xml) $(shell find infra/jvm -name '*.java')

.DEFAULT_GOAL := help
.PHONY: help install jvm demo test test-unit bench lint fmt clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

install: $(PY_STAMP) $(JVM_STAMP) ## Create .venv and fetch the JVM artifacts (once)

$(PY_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11"; exit 1; }
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	@touch $@

jvm: $(JVM_STAMP) ## Fetch the Kafka broker, Spark's Kafka connector, the HDFS daemons and xgboost4j, build the JVM scorer (Maven, once)

$(JVM_STAMP): $(JVM_POMS)
	@command -v java >/dev/null || { echo "error: java not found; run: apt-get install -y openjdk-17-jdk-headless"; exit 1; }
	@command -v mvn >/dev/null || { echo "error: mvn not found; run: apt-get install -y maven"; exit 1; }
	rm -rf .jvm/kafka .jvm/spark-kafka .jvm/hadoop .jvm/scoring .jvm/delta
	mvn --batch-mode --quiet -f infra/jvm/pom.xml package
	@touch $@

demo: install ## Start the embedded stack and run the platform end to end
	$(BIN)/warden demo

test: install ## Run the whole test suite (unit and integration, real services, headless Chromium)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { echo "error: the browser tests need Chromium; run: apt-get install -y chromium chromium-driver"; exit 1; }
	$(BIN)/pytest

test-unit: install ## Run only the tests that need no running service
	$(BIN)/pytest -m "not integration"

lint: $(PY_STAMP) ## Check style, format, types and import direction (what CI runs before the tests)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

fmt: $(PY_STAMP) ## Apply ruff's fixes and format the code
	$(BIN)/ruff check --fix-only .
	$(BIN)/ruff format .

$(BENCH_STAMP): $(PY_STAMP) bench/requirements-quix.txt
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/pip install --quiet --no-deps -r bench/requirements-quix.txt
	@touch $@

bench: install $(BENCH_STAMP) ## Measure throughput, latency, recovery, takeover and quality against two baselines (long: ~2 h)
	$(BIN)/warden up --service kafka --service mlflow
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean: ## Remove .venv and .jvm (not your data under WARDEN_HOME)
	rm -rf $(VENV) .jvm
