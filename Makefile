# Two entry points for a fresh machine: `make demo` and `make test`. Both install what they need first.
CARGO ?= cargo

.PHONY: demo test setup lint gpu-bundle gpu-bundle-check

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

# The GPU check bundle: target/gpu-bundle/ (beamline + the shared libraries it links + run.sh), <= 60 MiB.
# Copy it to a GPU node and run `./run.sh OUTDIR` there (reconstruct/src/gpu/bundle/README.md).
gpu-bundle:
	. target/env.sh && $(CARGO) build --release -p beamline
	reconstruct/src/gpu/bundle/make-bundle.sh target/release/beamline target/gpu-bundle

# What the bundle does on this machine (no GPU: "no CUDA driver", then the CPU half), small shapes.
gpu-bundle-check: gpu-bundle
	rm -rf target/gpu-bundle-check && env -u LD_LIBRARY_PATH BEAMLINE_BUNDLE_QUICK=1 \
		target/gpu-bundle/run.sh target/gpu-bundle-check
