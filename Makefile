# The two commands a newcomer needs: `make demo` and `make test`. Both set everything up.
VENV := .venv/bin
SERVICES := scripts/services.sh

.PHONY: setup up down reset demo test unit integration check bench bench-flows soak chaos clean test-tools

setup:
	@scripts/bootstrap.sh

up: setup
	@$(SERVICES) up

down:
	@$(SERVICES) down

reset:
	@$(SERVICES) reset

demo:
	@scripts/demo.sh

check: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/lint-imports
	$(VENV)/python scripts/check_sizes.py

unit: setup test-tools
	$(VENV)/pytest tests/unit -q

test-tools:
	@scripts/test-tools.sh

integration: up test-tools
	$(VENV)/pytest tests/integration -q

test: check up test-tools
	$(VENV)/pytest tests -q --durations=30

bench: up
	$(VENV)/tidemail bench

bench-flows: up
	$(VENV)/tidemail bench --flows

# A million users through two workers, the trainer and the deliverer (about 10 minutes here); not part of `make test`.
soak: up
	$(VENV)/tidemail soak

# Not in `make test`: about 18 minutes here (1M users, 2M events, 17 faults) on its own broker and Redis.
chaos: up
	$(VENV)/tidemail chaos

clean: down
	rm -rf .cache/worker .cache/bench
