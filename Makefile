# Everyday commands. `make run` brings up the local stack; `make test` runs the test suite.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: help venv install run test test-fast lint typecheck format clean bench bench-quick bench-simulator bench-registry bench-registry-connects bench-links bench-admission chaos lambda bench-processor deploy-tools test-deploy jmeter tf-moto lock

help:
	@echo "make run        local stack: mosquitto + processor + gateway on ws://localhost:8080"
	@echo "make test       install what the tests need, then run the whole suite"
	@echo "make test-fast  unit tests only"
	@echo "make lint       ruff + mypy"
	@echo "make lambda     build/processor-lambda.zip for the AWS Lambda (reproducible)"
	@echo "make jmeter     JMeter plan against a local stack (JMETER_ARGS=\"-Jcps=200\")"
	@echo "make tf-moto    terraform apply/destroy of infra/ against moto_server"
	@echo "make bench      gateway benchmark: both link modes against the ceilings"
	@echo "make bench-simulator  fleet ceiling against a local echo CSMS (~2 min)"
	@echo "make chaos      broker stopped/frozen/killed under load, through every link (~20 min)"
	@echo "make bench-admission  cold password checks, wrong passwords, a 20,000-CP storm (~4 min)"
	@echo "make bench-registry-connects  CPs/s with the AWS registries on moto_server (mutual TLS to the broker), mirror off/on, cold start (~6 min)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/pip install --quiet -e ".[dev]"

run:
	./scripts/local-stack.sh

test: install
	./scripts/install-test-tools.sh
	./scripts/install_deploy_tools.sh
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check gateway processor simulator
	$(BIN)/mypy

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format gateway processor simulator tests
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --cps 200 --duration 8 --idle-cps 2000 --idle-hold 10

chaos: install
	$(BIN)/python -m bench.chaos

bench-simulator: install
	$(BIN)/python bench/simulator_ceiling.py

lambda: install
	$(BIN)/python scripts/build_lambda.py

bench-processor: install
	$(BIN)/python scripts/bench_processor.py --calls 20000 --cps 200

bench-links: install
	$(BIN)/python -m bench.links --channels 2000

bench-registry: install
	$(BIN)/python scripts/bench_registry.py

bench-registry-connects: install
	$(BIN)/python scripts/bench_registry_connects.py --mtls

deploy-tools:
	./scripts/install_deploy_tools.sh

test-deploy: install deploy-tools
	$(BIN)/python -m pytest tests/unit/test_deploy_*.py tests/integration/test_deploy_*.py

jmeter: install deploy-tools
	./scripts/jmeter_local.sh $(JMETER_ARGS)

tf-moto: install
	$(BIN)/python scripts/tf_moto.py apply

lock:
	./scripts/lock_requirements.sh

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .run *.egg-info

bench-admission: install
	$(BIN)/python -m bench.admission
