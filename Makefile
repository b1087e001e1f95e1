# Two entry points for a fresh machine: `make demo` and `make test`. Both install what they need first.
CARGO ?= cargo

.PHONY: demo test setup

setup:
	./.ci/setup

demo: setup
	. target/env.sh && $(CARGO) run --release -q -p beamline -- demo

test: setup
	. target/env.sh && export BEAMLINE_RUN_DIR="$(CURDIR)/target/test-runs" && $(CARGO) build --release -p beamline && $(CARGO) test --release --workspace --no-fail-fast
