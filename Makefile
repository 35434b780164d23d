# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

WITH_BROKER := deploy/kafka/with-broker.sh $(PY)
KAFKA_ALSO  := 4.4.0

.PHONY: demo test e2e otelcol lint services bench bench-detection bench-open-loop bench-otlp bench-speed bench-stream schemas fuzz mutation clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(WITH_BROKER) $(PY) -m canarystream demo

# Peer programs the tests run for real, when missing: HAProxy, NGINX, kcat, PostgreSQL, Chromium and
# Prometheus (with promtool) from Debian, Unleash from npm (deploy/services/unleash).
services:
	bash deploy/services/install.sh
	bash deploy/services/unleash/install.sh

# The broker is started for the run (unless one runs already) and stopped afterwards. The
# worker's broker tests (tests/streaming, marked kafka) run again on Kafka $(KAFKA_ALSO), on a
# port of its own (29092), so that a broker already up on the default one is not taken for it.
# Tests marked flagd need a flagd binary, which the Go module proxy here refuses to serve
# (deploy/services/install-flagd.sh builds it where it is served): deselected, not skipped.
# Tests marked otelcol need the OpenTelemetry Collector built from its Go modules (minutes on a
# first build): `make e2e` builds it and runs them.
test: $(STAMP) services
	$(VENV)/bin/ruff check canarystream tests benchmarks
	$(VENV)/bin/ruff format --check canarystream tests benchmarks
	$(VENV)/bin/mypy
	$(WITH_BROKER) $(PY) -m pytest -n 2 -m "not flagd and not otelcol" canarystream tests
	CANARYSTREAM_KAFKA_VERSION=$(KAFKA_ALSO) KAFKA_PORT=29092 $(WITH_BROKER) $(PY) -m pytest -n 2 -m kafka tests/streaming

# The end-to-end drills alone (tests/e2e): real broker, worker, HAProxy, Unleash and every
# actuator under load; a healthy canary promoted, a regressed one rolled back. `make test` runs
# the first too; the second (test_otlp_e2e.py) only here: services instrumented with the
# OpenTelemetry SDK send OTLP to a real Collector, whose Kafka exporter feeds the OTLP bridge.
e2e: $(STAMP) services otelcol
	$(WITH_BROKER) $(PY) -m pytest -m e2e tests/e2e

# The OpenTelemetry Collector of the e2e drill (deploy/otelcol: OTLP receiver, Kafka exporter,
# every module at one pinned release), built from its Go modules once and cached under
# ~/.cache/canarystream/otelcol (CANARYSTREAM_OTELCOL_HOME); prints the binary's path.
otelcol:
	bash deploy/otelcol/build.sh

# The bounded fuzzer (tests/fuzz): mutated and generated messages through the worker's processor
# and through replay, each under a time limit. Fails on any crash, hang or silent decision
# change, and leaves a reproducer of each in out/fuzz/ (`make test` runs 2,000 of them).
fuzz: $(STAMP)
	$(PY) -m tests.fuzz --inputs 100000 --seed 1

# Mutation testing (mutmut; pyproject.toml [tool.mutmut]) of the modules in MUTATE, in a copy
# of the tree under out/mutation/; each mutant runs only the broker-free tests that reach the
# function it changes. Every mutant's status: out/mutation/results.txt; the survivors and a
# score per module are printed (benchmarks/mutation.md explains them).
# E.g. make mutation MUTATE="canarystream/contracts/signing.py" MUTATION_JOBS=1
MUTATE ?= canarystream/analysis canarystream/engine canarystream/streaming/processor.py \
	canarystream/actuators/fencing.py canarystream/contracts/signing.py
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	rm -rf out/mutation && mkdir -p out/mutation
	cp -R canarystream tests pyproject.toml out/mutation/
	$(PY) -m tests.mutation out/mutation/pyproject.toml $(MUTATE)
	cd out/mutation && $(abspath $(VENV))/bin/mutmut run --max-children $(MUTATION_JOBS)
	cd out/mutation && $(abspath $(VENV))/bin/mutmut results --all true > results.txt
	grep -v ": killed$$" out/mutation/results.txt || true
	$(PY) -m tests.mutation --summary < out/mutation/results.txt

# mypy takes its settings (strict, over canarystream/) from pyproject.toml [tool.mypy].
lint: $(STAMP)
	$(VENV)/bin/ruff check canarystream tests benchmarks
	$(VENV)/bin/mypy

schemas: $(STAMP)
	$(PY) -m canarystream.contracts.schemas topics

bench: bench-speed bench-detection bench-stream

bench-speed: $(STAMP)
	$(PY) -m benchmarks.speed

bench-stream: $(STAMP)
	$(WITH_BROKER) $(PY) -m benchmarks.stream

# OTLP ingest: the bridge's conversion, the bridge on the broker, and SDK -> Collector -> Kafka
# -> bridge (the Collector of deploy/otelcol, built on first use).
bench-otlp: $(STAMP)
	$(WITH_BROKER) $(PY) -m benchmarks.otlp

bench-detection: $(STAMP)
	$(PY) -m benchmarks.detection

# Open-loop recordings (routing fixed by the recording) judged with backtest.
bench-open-loop: $(STAMP)
	$(PY) -m benchmarks.open_loop

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build *.egg-info
