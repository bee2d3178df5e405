# The two commands that do everything on a fresh machine: `make demo` and `make test`.
.PHONY: setup demo test lint stack-start stack-stop stack-status stack-reset bench lock proto

setup:          ## venv from the lock, generated code, Kafka jars, redis-server
	scripts/setup.sh

demo: setup     ## the main job: local stack + a simulated Sunday.com week through the mesh
	scripts/demo.sh

test:           ## lint, mypy --strict and the whole test suite against the real local stack
	scripts/test.sh

lint: setup
	.venv/bin/ruff check . && .venv/bin/mypy mesh services gateway simulator bench

stack-start:
	deploy/local/stack.sh start
stack-stop:
	deploy/local/stack.sh stop
stack-status:
	deploy/local/stack.sh status
stack-reset:
	deploy/local/stack.sh reset

bench: setup    ## all benchmarks, quick mode, into out/bench
	deploy/local/stack.sh start && .venv/bin/python -m bench all --quick --out out/bench

lock:           ## re-resolve requirements.in into requirements.lock (one joint resolve)
	uv pip compile requirements.in -o requirements.lock --python-version 3.11

proto:
	rm -f gen/.stamp && scripts/setup.sh
