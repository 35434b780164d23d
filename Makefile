# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

WITH_BROKER := deploy/kafka/with-broker.sh $(PY)

.PHONY: demo test lint services bench bench-detection bench-speed bench-stream schemas clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m canarystream.demo

# Peer programs the tests run for real (HAProxy, NGINX, kcat), from Debian, when missing.
services:
	bash deploy/services/install.sh

# The broker is started for the run (unless one runs already) and stopped afterwards.
test: $(STAMP) services
	$(VENV)/bin/ruff check canarystream tests benchmarks
	$(VENV)/bin/ruff format --check canarystream tests benchmarks
	$(WITH_BROKER) $(PY) -m pytest -n 2 canarystream tests

lint: $(STAMP)
	$(VENV)/bin/ruff check canarystream tests benchmarks

schemas: $(STAMP)
	$(PY) -m canarystream.contracts.schemas topics

bench: bench-speed bench-detection bench-stream

bench-speed: $(STAMP)
	$(PY) -m benchmarks.speed

bench-stream: $(STAMP)
	$(WITH_BROKER) $(PY) -m benchmarks.stream

bench-detection: $(STAMP)
	$(PY) -m benchmarks.detection

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
