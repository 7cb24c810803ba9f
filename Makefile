# ncf — the two commands a newcomer needs: `make demo` and `make test`.
# Everything else (bench, device-check, results) is a target below.

SHELL := /bin/bash
CARGO ?= cargo
VENV ?= .venv
PY := $(VENV)/bin/python3
# NVRTC 13.0 from PyPI: compiles the CUDA kernels in CI without a GPU (pinned to the lent GPUs' CUDA).
NVRTC_PIP := 'nvidia-cuda-nvrtc==13.0.*' 'nvidia-cuda-runtime==13.0.*' 'nvidia-cuda-crt==13.0.*'
# ptxas of the same release (the kernels' resource check): its wheel's dependencies are unpinned
# (a plain install pulls a newer nvvm), so it goes in alone with --no-deps.
PTXAS_PIP := 'nvidia-cuda-nvcc==13.0.*'
PY_PIP := 'pyarrow==22.*' 'numpy==2.*'
NVRTC_HOME = $(shell ls -d $(VENV)/lib/python3*/site-packages/nvidia/cu13 2>/dev/null | head -n1)
export NCF_NVRTC_HOME := $(abspath $(NVRTC_HOME))
export NCF_PYTHON := $(abspath $(PY))

# MPI (issue 34, docs/DISTRIBUTED.md): where Open MPI (mpicc or `pkg-config ompi`) and libclang
# (rsmpi's bindgen) are installed, everything is built with the cargo feature ncf-cli/mpi, so that
# ranks started by mpirun / srun talk over MPI. Without them the build still works; CPU ranks then
# say to rebuild with MPI. `make FEATURES=` turns it off; .ci/run installs both.
HAVE_MPI := $(shell { command -v mpicc || pkg-config --exists ompi; } >/dev/null 2>&1 && echo yes)
HAVE_LIBCLANG := $(shell ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so' && echo yes)
ifeq ($(HAVE_MPI)$(HAVE_LIBCLANG),yesyes)
FEATURES ?= --features ncf-cli/mpi
else
FEATURES ?=
endif

.PHONY: all build release test lint unit demo venv clean bench install device-check device-pack fmt bench-scale paper-grid paper-tune mf-ml1m ensemble-ml1m

all: build

# BUILD_FLAGS: extra cargo flags (scripts/bench-newcomer.sh passes --timings).
BUILD_FLAGS ?=
build:
	$(CARGO) build --workspace $(FEATURES) $(BUILD_FLAGS)

release:
	$(CARGO) build --release --workspace $(FEATURES)

# Python side: pyarrow (tests read our Parquet with it) and NVRTC (kernel compile test).
$(VENV)/.ok:
	@command -v python3 >/dev/null || { echo "make: python3 is needed (apt-get install python3 python3-venv)"; exit 1; }
	python3 -m venv $(VENV) || { apt-get update && apt-get install -y python3-venv && python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(PY_PIP) $(NVRTC_PIP)
	touch $@

$(VENV)/.ptxas: $(VENV)/.ok
	$(PY) -m pip install -q --no-deps $(PTXAS_PIP)
	touch $@

venv: $(VENV)/.ok $(VENV)/.ptxas

fmt:
	$(CARGO) fmt --all

lint:
	@rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy || true
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets $(FEATURES) -- -D warnings

unit: venv
	$(MAKE) -s venv
	NCF_NVRTC_HOME=$$(ls -d $$PWD/$(VENV)/lib/python3*/site-packages/nvidia/cu13) NCF_PYTHON=$$PWD/$(PY) \
	  $(CARGO) test --workspace $(FEATURES)

test: lint unit

# The whole pipeline on the bundled ml-latest-small, offline: prep -> negsample -> train -> eval -> topk.
# It runs the dev-profile binaries (optimised), the build `make test` reuses: one build for both;
# no Python (the closing lines are `ncf-bench-report run-summary`).
DEMO ?= out/demo
DEMO_USER ?= 1
DEMO_BIN := target/debug
BIN := target/release
demo: build
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(DEMO_BIN)/ncf-prep data/ml-latest-small/ratings.csv --movies data/ml-latest-small/movies.csv -o $(DEMO)/dataset
	$(DEMO_BIN)/ncf-negsample $(DEMO)/dataset --test-negatives 100
	$(DEMO_BIN)/ncf-train $(DEMO)/dataset -o $(DEMO)/model.safetensors --preset ml1m --epochs 8 --batch-size 16384 \
	  --log $(DEMO)/train.jsonl
	@echo "== HR@10 / NDCG@10 of the held-out item among 100 negatives =="
	$(DEMO_BIN)/ncf-eval $(DEMO)/dataset $(DEMO)/model.safetensors --k 10 | tee $(DEMO)/eval.json
	@echo "== top 10 for user $(DEMO_USER) (items already rated excluded) =="
	$(DEMO_BIN)/ncf-topk $(DEMO)/dataset $(DEMO)/model.safetensors -k 10 $(DEMO_USER)
	$(DEMO_BIN)/ncf-plot curve $(DEMO)/train.jsonl -o $(DEMO)/curve.png
	@$(DEMO_BIN)/ncf-bench-report run-summary $(DEMO)/train.jsonl $(DEMO)/eval.json --curve $(DEMO)/curve.png

# The standard benchmark suite on whatever this machine has (< 20 min on 2 cores): writes
# benchmarks/results/<date>-<machine>.json and regenerates BENCHMARKS.md / README.md's numbers.
# NCF_PEER_PYTHON=/path/to/python-with-torch adds the PyTorch peer side by side.
bench:
	scripts/bench.sh

# Every tool at 20M, 131M and 1.22B interactions (MLPerf's ml-20mx16x32 shape; issue 33): wall
# time, peak RSS and its mapped file pages of prep, negsample 100 and 999, one CPU training step
# and a sampled evaluation of 10,000 users → benchmarks/results/<date>-scale/ (table, chart).
# About 1.5 h and 40 GB of free disk on 2 cores; SIZES=20m,131m runs the smaller ones only.
bench-scale:
	scripts/bench-scale.sh $(SIZES)

# The NCF paper's ml-1m grid (issue 7): GMF / MLP / NeuMF / pre-trained NeuMF, factors 8-64, 3 seeds,
# three protocols (1+99, 1+100, full ranking) → benchmarks/results/<date>-paper-grid/RESULTS.md.
# Hours on a 2-core CPU; FACTORS=8 SEEDS=1 for a part, DEVICE=cuda on a GPU. Run it again after
# an interruption: finished cells are reused and a stopped one resumes from its last epoch.
paper-grid: release
	BIN=$(BIN) scripts/paper-grid.sh

# The paper's own tuning of one cell (its Section 4.1): batch size x learning rate on a validation
# split carved from the training file (MODEL=neumf FACTORS=64 SEED=1 EPOCHS=8 by default)
# → benchmarks/results/<date>-paper-tune/summary.md; then BATCH=… LR=… make paper-grid on the
# test file. About 1.5 hours on 2 idle cores for the 16 configs at factors 64.
paper-tune: release
	BIN=$(BIN) scripts/paper-tune.sh

# Rendle et al.'s MF (--model mf) on the paper's split: epochs chosen on a validation split, then
# 5 seeds on the test file (last epoch) → benchmarks/results/<date>-mf-ml1m/summary.md.
# About 10 min per 256-epoch run on 2 idle cores; FACTORS=64 SEEDS=1 EPOCHS=64 for a short one.
mf-ml1m: release
	BIN=$(BIN) scripts/mf-ml1m.sh

# MF + iALS (+ EASE item-item and user-user, --model ease / ease-users) as one ensemble, every
# choice on 3 validation splits (scripts/ensemble-ml1m.sh): both mf-ml1m runs (MODEL=mf,
# MODEL=ials), their validation models on 2 more splits, the weights, 5 seeds on the test file.
# About 1.5 hours on 2 idle cores, nearly all of it MF.
ensemble-ml1m: release
	BIN=$(BIN) scripts/ensemble-ml1m.sh

# Binaries, man pages and bash/zsh/fish completions into $(PREFIX) (`man ncf-train` afterwards).
PREFIX ?= /usr/local
install: release
	scripts/install.sh $(PREFIX) $(BIN)

clean:
	$(CARGO) clean; rm -rf $(VENV)

# GPU: build here and gather the carry (.device), then on the lent GPU machine run device-check
# (no Rust there). See docs/CUDA.md and BENCHMARKS.md.
device-pack:
	scripts/device-pack.sh

device-check:
	bash scripts/device-check.sh

# Coverage-guided fuzzing of every reader (nightly + cargo-fuzz; see docs/RELIABILITY.md).
# FUZZ_SECONDS per target, one target at a time, niced: `make fuzz FUZZ_SECONDS=600`.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= ratings_text ratings_ncf dataset_parquet dataset_ipc model
.PHONY: fuzz
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
	  mkdir -p corpus/$$t && \
	  nice -n 10 $(CARGO) +nightly fuzz run $$t corpus/$$t seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -print_final_stats=1 || exit 1; \
	done
