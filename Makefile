# Build, run and test entry points. What runs where: docs/architecture.md.
#   make up | down | status | logs     the local stack (PostgreSQL, Kafka, services, sandboxes)
#   make test [PYTEST_ARGS=...]        the stack, then the whole pytest suite
#   make unit                          the unit tests only (tests/*/unit), no stack
#   make bench [N=2000]                the stack, then benchmarks.orders
#   make bench-inventory [LEVELS=100000]  the stack, then benchmarks.inventory (every plan)
#   make bench-payouts [TRANSACTIONS=10000]  the stack, then one payout of N balance transactions to a Prima journal (benchmarks.payouts)
#   make chaos [CHAOS_ARGS=...]        the stack, then a chaos run (benchmarks.chaos; docs/reliability.md)
#   make bench-replay [EVENTS=10000 BATCH=200]  the stack, then aggregate loads with and without snapshots (benchmarks.replay)
#   make fuzz [FUZZ_EXAMPLES=2000]     the stack, then the edge fuzz tests at length; prints their figures (docs/reliability.md)
#   make test-compose                  docker compose for real: images built offline, stack up, tests/compose (docs/docker.md)
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The first Python >= 3.11 on PATH (pyproject.toml requires it).
PYTHON3 ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
  command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
# Touched after a successful install: pip runs again only when its inputs change.
STAMP := $(VENV)/.installed
LOCAL := deploy/local
STATE_DIR := $(or $(SHOPIFY_PRIMA_STATE_DIR),$(CURDIR)/.run)
PYTEST_ARGS ?=
# Where `make test` records pytest's own exit code (make itself only ever exits 0 or 2).
PYTEST_RC := $(STATE_DIR)/pytest.exitcode
# The tests' own Kafka broker, another instance of kafka.sh than the stack's: integration tests never
# publish to or make consumer groups on the stack's broker (tests/support.py, the same defaults).
TEST_KAFKA := SHOPIFY_PRIMA_STATE_DIR=$(STATE_DIR)/test-kafka KAFKA_PORT=$${TEST_KAFKA_PORT:-29092} \
  KAFKA_CONTROLLER_PORT=$${TEST_KAFKA_CONTROLLER_PORT:-29093} KAFKA_HEAP=$${TEST_KAFKA_HEAP:-512m} $(LOCAL)/kafka.sh

.PHONY: help venv contract-tools up down test unit bench bench-inventory bench-payouts bench-replay fuzz chaos logs status addresses clean test-compose

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -n "$(PYTHON3)" || { echo "error: no Python >= 3.11 on PATH" >&2; exit 1; }
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test]'
	@touch $@

# The standard tools the published contracts are checked with (tests/contracts): the AsyncAPI CLI
# and ajv, pinned in tools/contracts/package-lock.json; npm ci runs again only when that changes.
CONTRACT_TOOLS := tools/contracts/node_modules/.installed
contract-tools: $(CONTRACT_TOOLS)

$(CONTRACT_TOOLS): tools/contracts/package.json tools/contracts/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found: the contract checks (tests/contracts) need Node.js 20 or later with npm" >&2; exit 1; }
	npm ci --prefix tools/contracts --ignore-scripts --no-audit --no-fund
	@touch $@

up: venv
	$(LOCAL)/postgres.sh start
	$(LOCAL)/kafka.sh start
	$(PY) -m services.setup
	$(LOCAL)/services.sh start
	@$(MAKE) --no-print-directory addresses

# Ports follow the same SHOPIFY_PRIMA_*_PORT settings as the processes (services/platform/settings.py).
addresses:
	@echo
	@echo "shopify-prima local stack is up"
	@echo "  ops API            http://127.0.0.1:$${SHOPIFY_PRIMA_OPS_API_PORT:-8080}  (/health, /metrics)"
	@echo "  Shopify webhooks   http://127.0.0.1:$${SHOPIFY_PRIMA_INGEST_PORT:-8081}/webhooks/shopify  (/health, /metrics)"
	@echo "  worker metrics     http://127.0.0.1:$${SHOPIFY_PRIMA_ORDER_DECIDER_METRICS_PORT:-9101}/metrics  order decider"
	@echo "                     http://127.0.0.1:$${SHOPIFY_PRIMA_OUTBOX_RELAY_METRICS_PORT:-9102}/metrics  outbox relay"
	@echo "                     http://127.0.0.1:$${SHOPIFY_PRIMA_PRIMA_GATEWAY_METRICS_PORT:-9103}/metrics  Prima gateway"
	@echo "                     http://127.0.0.1:$${SHOPIFY_PRIMA_PROJECTOR_METRICS_PORT:-9104}/metrics  projector"
	@echo "  Prima sandbox      http://127.0.0.1:$${SHOPIFY_PRIMA_PRIMA_SANDBOX_PORT:-8090}"
	@echo "  Shopify sandbox    http://127.0.0.1:$${SHOPIFY_PRIMA_SHOPIFY_SANDBOX_PORT:-8091}"
	@echo "  Kafka              127.0.0.1:$${KAFKA_PORT:-19092}"
	@echo "  PostgreSQL         postgresql://shopify_prima:shopify_prima@127.0.0.1:$${PGPORT:-55432}/shopify_prima"
	@echo "  logs               $(STATE_DIR)/logs  (make logs)"

# Every step runs even if an earlier one fails; the target fails if any did.
down:
	@rc=0; \
	$(LOCAL)/services.sh stop || rc=1; \
	$(TEST_KAFKA) stop || rc=1; \
	$(LOCAL)/kafka.sh stop || rc=1; \
	$(LOCAL)/postgres.sh stop || rc=1; \
	exit $$rc

# The suite, then the short chaos run (it restarts Kafka and PostgreSQL), then the OM link e2e tests
# (they switch the stack's Prima gateway and poller to OM link and back, so they go last). With
# PYTEST_ARGS only those tests run, in one pytest run (name tests/prima/e2e to run the OM link ones).
# The tests' own Kafka broker runs for the suite and is stopped after it.
test: up contract-tools
	@mkdir -p $(STATE_DIR); rm -f $(PYTEST_RC)
	$(TEST_KAFKA) start
	@rc=0; $(PY) -m pytest -ra -m "not chaos$(if $(PYTEST_ARGS),, and not omlink)" $(PYTEST_ARGS) || rc=$$?; \
	$(TEST_KAFKA) stop || true; \
	if [[ $$rc == 0 && -z "$(PYTEST_ARGS)" ]]; then $(PY) -m pytest -ra -m chaos || rc=$$?; fi; \
	if [[ $$rc == 0 && -z "$(PYTEST_ARGS)" ]]; then $(PY) -m pytest -ra -m omlink || rc=$$?; fi; \
	echo $$rc > $(PYTEST_RC); exit $$rc

unit: venv contract-tools
	$(PY) -m pytest -ra -m unit $(PYTEST_ARGS)

bench: up
	$(PY) -m benchmarks.orders --orders $${N:-2000}

bench-inventory: up
	$(PY) -m benchmarks.inventory --levels $${LEVELS:-100000}

bench-payouts: up
	$(PY) -m benchmarks.payouts --transactions $${TRANSACTIONS:-10000}

chaos: up
	$(PY) -m benchmarks.chaos $(CHAOS_ARGS)

bench-replay: up
	$(PY) -m benchmarks.replay --events $${EVENTS:-10000} --batch $${BATCH:-200}

# The fuzz tests of the edges (issue 13) with many more cases than `make test` gives them (150
# each); the figures of each (cases, answers by status, 5xx, crashes, facts published) are printed
# and kept in $(STATE_DIR)/fuzz.json; docs/reliability.md "Fuzzing the edges" records a run.
FUZZ_TESTS := tests/orders/integration/test_ingest_fuzz.py tests/ops/integration/test_ops_api_fuzz.py
fuzz: up
	@mkdir -p $(STATE_DIR); rm -f $(STATE_DIR)/fuzz.json
	@rc=0; FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-2000} FUZZ_REPORT=$(STATE_DIR)/fuzz.json \
	$(PY) -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning $(FUZZ_TESTS) || rc=$$?; \
	$(PY) -m tests.fuzzing $(STATE_DIR)/fuzz.json; exit $$rc

# The stack as Docker users run it (docs/docker.md), independent of `make up`: a Docker engine
# (started, and stopped again, if none runs), the images built with no registry, `docker compose
# up --wait`, tests/compose against the published ports, `docker compose down -v`. Exit code:
# pytest's; also in $(STATE_DIR)/compose/exitcode. Timings and versions: $(STATE_DIR)/compose/summary.txt.
test-compose: venv
	deploy/compose/test.sh

# Follows every log of the stack; FOLLOW=0 prints the last lines and returns.
logs:
	@test -d $(STATE_DIR)/logs || { echo "no logs yet in $(STATE_DIR)/logs" >&2; exit 1; }
	@if [[ "$${FOLLOW:-1}" == 0 ]]; then tail -n 20 $(STATE_DIR)/logs/*.log; \
	else tail -n 20 -F $(STATE_DIR)/logs/*.log; fi

status:
	@$(LOCAL)/postgres.sh status || true
	@$(LOCAL)/kafka.sh status || true
	@$(LOCAL)/services.sh status || true

# Stops the stack and deletes its state (database, Kafka log, logs). Keeps the venv.
clean: down
	rm -rf $(STATE_DIR)
