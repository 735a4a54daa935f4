# The two commands: `make demo` and `make test`. Both install and start what they need.
.PHONY: demo test build lint stack-up stack-down

demo:
	scripts/demo.sh

test:
	scripts/test.sh

build:
	cargo build --workspace --bins --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

stack-up:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

# The speed and memory benchmark (not part of `make test`): see docs/bench.md.
.PHONY: bench
bench:
	scripts/bench.sh

# The chaos suite at length (300 s of faults; `make test` runs a 30 s variant): see docs/development.md, "Chaos".
.PHONY: chaos
chaos:
	scripts/chaos.sh
