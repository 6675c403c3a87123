# The two commands a newcomer needs: `make run` (a demo with its own backends) and
# `make test` (everything that tests the project). The rest are for developers.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: run test deps build lint bench fairness bench-relay clean

run: build
	scripts/demo.sh

test: deps
	$(CARGO) build --release --features fault-injection
	$(CARGO) test --release --features fault-injection
	@for t in tests/shell/*.sh; do \
	  [ "$$(basename $$t)" = lib.sh ] && continue; \
	  echo "== $$t"; bash "$$t" || exit 1; \
	done

# Installs what the tests need when run as root on Debian; otherwise names what is missing.
deps:
	scripts/test-deps.sh

build:
	$(CARGO) build --release

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets --features fault-injection -- -D warnings

bench: build
	scripts/bench.sh

fairness: build
	scripts/fairness.sh

bench-relay: build
	scripts/bench-eventrelay.sh

clean:
	$(CARGO) clean
