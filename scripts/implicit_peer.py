#!/usr/bin/env python3
"""The `implicit` library's ALS as a peer of `ncf-train --model ials` (issue 36; `make bench`'s
iALS rows, scripts/ials-peer-tune.sh). Needs a Python with implicit, numpy and scipy
(NCF_PEER_PYTHON); the data comes from, and goes back through, ncf's own tools:

    ials_peer_io export DATASET SPLIT [--validation-seed S]   # our training pairs, as arrays
    implicit_peer.py SPLIT --factors 64 --iterations 5 --solver cg --out FACTORS
    ials_peer_io import DATASET FACTORS model.safetensors        # the factors as an ncf model
    ncf-eval DATASET model.safetensors [--validation --validation-seed S]

Fits AlternatingLeastSquares on SPLIT/train.u32 (each training pair a 1 in the user × item
matrix) with `--threads` threads (BLAS held to one thread, as implicit asks), writes the factors
to FACTORS/user.f32 and FACTORS/item.f32 and prints one JSON line: the seconds of every
iteration (one user half + one item half, timed by implicit's own callback, so the set-up
before the first is not counted) and their median, the flags and the versions. `--metrics`
also ranks SPLIT/eval.u32 in numpy the way ncf-eval does (ties count against the held-out item,
a negative equal to it is skipped): the cross-check of the exported route.

Unless given, --regularization and --alpha are the values tuned on validation split 0 for that
factors and solver (TUNED below; scripts/ials-peer-tune.sh and its results folder).
"""
import argparse
import json
import os
import sys
import time

# implicit's own advice (it warns otherwise): one BLAS thread, parallelism in its own loops.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402

# (factors, solver) -> (regularization, alpha): the best by HR@10 (then NDCG@10) on validation
# split 0 of the paper's ml-1m split at 16 iterations, 2026-12-07 (scripts/ials-peer-tune.sh;
# benchmarks/results/2026-12-07-ials-peer/peer-tuning.jsonl: a 6 × 3 grid widened to 9 × 5 where
# the best lay on its edge; Cholesky on the best three, then two, of the conjugate-gradient grid).
TUNED = {
    (64, "cg"): (100.0, 30.0),  # validation HR@10 0.8407, NDCG@10 0.5790
    (64, "cholesky"): (100.0, 30.0),  # 0.8404, 0.5811
    (192, "cg"): (100.0, 10.0),  # 0.8435, 0.6054
    (192, "cholesky"): (100.0, 10.0),  # 0.8437, 0.6071
}
FALLBACK = (0.01, 1.0)  # implicit's defaults


def load_split(folder):
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)
    pairs = np.fromfile(os.path.join(folder, "train.u32"), dtype="<u4").reshape(-1, 2)
    ones = np.ones(len(pairs), dtype=np.float32)
    m = scipy.sparse.csr_matrix(
        (ones, (pairs[:, 0], pairs[:, 1])), shape=(meta["n_users"], meta["n_items"])
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return meta, m


def ranked_metrics(folder, meta, users, items, k=10):
    """HR@k / NDCG@k of eval.u32 as ncf's metrics module defines them."""
    per = meta["negatives_per_row"]
    rows = np.fromfile(os.path.join(folder, "eval.u32"), dtype="<u4").reshape(-1, 2 + per)
    u, pos, negs = rows[:, 0], rows[:, 1], rows[:, 2:]
    wu = users[u].astype(np.float32)
    pos_s = np.einsum("ij,ij->i", wu, items[pos])
    neg_s = np.einsum("ij,inj->in", wu, items[negs])
    # Not strictly below the held-out item: ties (and NaNs) count against it.
    outranks = ~(neg_s < pos_s[:, None]) & (negs != pos[:, None])
    rank = outranks.sum(axis=1)
    hit = rank < k
    ndcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return float(hit.mean()), float(ndcg.mean())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("split", help="folder from `ials_peer_io export`")
    p.add_argument("--factors", type=int, required=True)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--solver", choices=["cg", "cholesky"], required=True)
    p.add_argument("--regularization", type=float)
    p.add_argument("--alpha", type=float)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="folder for user.f32 / item.f32")
    p.add_argument("--metrics", action="store_true", help="also HR/NDCG@10 in numpy")
    a = p.parse_args()

    import implicit
    from implicit.cpu.als import AlternatingLeastSquares

    reg, alpha = TUNED.get((a.factors, a.solver), (None, None))
    tuned = reg is not None
    reg, alpha = (reg, alpha) if tuned else FALLBACK
    reg = a.regularization if a.regularization is not None else reg
    alpha = a.alpha if a.alpha is not None else alpha
    meta, m = load_split(a.split)
    model = AlternatingLeastSquares(
        factors=a.factors,
        regularization=reg,
        alpha=alpha,
        dtype=np.float32,
        use_cg=a.solver == "cg",
        iterations=a.iterations,
        num_threads=a.threads,
        random_state=a.seed,
    )
    times = []
    t0 = time.perf_counter()
    model.fit(m, show_progress=False, callback=lambda it, elapsed, loss: times.append(elapsed))
    fit_s = time.perf_counter() - t0
    users = np.ascontiguousarray(model.user_factors, dtype="<f4")
    items = np.ascontiguousarray(model.item_factors, dtype="<f4")
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        users.tofile(os.path.join(a.out, "user.f32"))
        items.tofile(os.path.join(a.out, "item.f32"))
    out = {
        "peer": "implicit",
        "implicit": implicit.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "factors": a.factors,
        "solver": a.solver,
        "cg_steps": model.cg_steps if a.solver == "cg" else None,
        "iterations": a.iterations,
        "regularization": reg,
        "alpha": alpha,
        "params_from": "flags" if a.regularization is not None or a.alpha is not None
        else ("tuned" if tuned else "implicit defaults"),
        "threads": a.threads,
        "seed": a.seed,
        "split": meta["split"],
        "iteration_s": times,
        "seconds_per_iteration": float(np.median(times)),
        "fit_s": fit_s,
    }
    if a.metrics:
        out["hr"], out["ndcg"] = ranked_metrics(a.split, meta, users, items)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
