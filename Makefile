# Two entry points for a fresh machine: `make demo` and `make test`. Both install what they need first.
CARGO ?= cargo

.PHONY: demo test setup lint

setup:
	./.ci/setup

demo: setup
	. target/env.sh && $(CARGO) run --release -q -p beamline -- demo

# Formatting and lints are part of the build: `make test` fails on either.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

test: setup lint
	. target/env.sh && export BEAMLINE_RUN_DIR="$(CURDIR)/target/test-runs" && $(CARGO) build --release -p beamline && $(CARGO) test --release --workspace --no-fail-fast
