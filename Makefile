# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test system-deps bench-analysis bench-identify bench-embedding bench-recommend bench-queue bench-chat bench-ingest clean

# ffmpeg decodes every container; installed from Debian packages when missing and we may.
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing ffmpeg (apt-get)"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	  else echo "mixwith needs ffmpeg: install it with your package manager (e.g. sudo apt-get install ffmpeg)"; exit 1; fi; }

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mixwith needs Python 3.11 or newer (set PY=python3.11)")'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: system-deps $(STAMP)

demo: install
	$(BIN)/mixwith demo

test: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench-analysis: install
	$(BIN)/python -m bench.analysis
bench-identify: install
	$(BIN)/python -m bench.identify
	$(BIN)/python -m bench.identify.lookalike
bench-embedding: install
	$(BIN)/python -m bench.embedding
bench-ingest: install
	$(BIN)/python -m bench.ingest
bench-recommend: install
	$(BIN)/python -m bench.recommend
bench-queue: install
	$(BIN)/python -m bench.queue
bench-chat: install
	$(BIN)/python -m bench.chat

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
