# The two commands a newcomer needs: `make run` (a demo with its own backends) and
# `make test` (everything that tests the project). `make install` is for operators (README,
# "Running it as a service"); the rest are for developers.
CARGO ?= cargo
SHELL := /bin/bash

.PHONY: run test deps build lint install bench fairness bench-relay clean

# `make install`: the four binaries to $(DESTDIR)$(BINDIR), the systemd unit to
# $(DESTDIR)$(UNITDIR). systemd reads units from both /usr/local/lib/systemd/system and
# /usr/lib/systemd/system, so one rule serves PREFIX=/usr/local (the default) and PREFIX=/usr.
# DESTDIR stages the tree (packaging, tests); the unit's ExecStart names $(BINDIR) without it.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
BINARIES := loadbalancer backend eventrelay eventsim

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

# fuzz/ (a crate of its own) is formatted here; it is built by the fuzz step of .ci/run
# (scripts/fuzz.sh). A `cargo check` of it here failed now and then on a fresh target
# directory, in cargo's probe of the compiler, so it is not part of lint.
lint:
	$(CARGO) fmt --check
	$(CARGO) fmt --check --manifest-path fuzz/Cargo.toml
	$(CARGO) clippy --all-targets --features fault-injection -- -D warnings

install: build
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(UNITDIR)"
	install -m 755 $(addprefix target/release/,$(BINARIES)) "$(DESTDIR)$(BINDIR)/"
	sed 's|/usr/local/bin/|$(BINDIR)/|g' examples/loadbalancer.service > "$(DESTDIR)$(UNITDIR)/loadbalancer.service"
	chmod 644 "$(DESTDIR)$(UNITDIR)/loadbalancer.service"

bench: build
	scripts/bench.sh

fairness: build
	scripts/fairness.sh

bench-relay: build
	scripts/bench-eventrelay.sh

clean:
	$(CARGO) clean
