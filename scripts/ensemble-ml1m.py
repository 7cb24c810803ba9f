#!/usr/bin/env python3
"""The ensemble stages of scripts/ensemble-ml1m.sh (which trains MF and iALS first).

Members, each added only if it raises the validation score of the ensemble so far:
  MF (weight 1), iALS (weight w), EASE item-item (λ, weight), EASE user-user (λ, weight).
Every choice is made on validation splits of the training data, never on the test file: the
score of a candidate is its HR@10 averaged over the validation splits (seeds VALIDATION_SEEDS;
one random training interaction per user held out, 99 sampled negatives each), ties broken by
the averaged NDCG@10. Several splits average out the noise of one (±0.001 HR on ml-1m is a
handful of users). Models are scored as one ranking by `ncf-eval A B … --weights …`.

Writes, under OUT: ensemble-validation.jsonl (iALS weight), ensemble-ease-validation.jsonl and
ensemble-ease-users-validation.jsonl (λ, weight), each line with the per-split numbers;
ease/ and ease-users/ (training logs); runs.jsonl (one line per test seed); summary.md.
"""
import argparse
import json
import math
import os
import statistics as st
import struct
import subprocess
import sys


def run(cmd, out=None):
    if out is None:
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    with open(out, "w") as f:
        subprocess.run(cmd, check=True, stdout=f)
    return None


def last_epoch(log):
    return [json.loads(l) for l in open(log) if '"epoch"' in l][-1]


def kind_of(name):
    """A member's model kind: `ease-users-l250` → `ease-users`, `mf` → `mf`."""
    return name.rsplit("-l", 1)[0]


def fresh(path, epoch, factors, train):
    """Whether the model file at `path` exists and was trained as asked: its last epoch index
    `epoch`, `factors` (None: any) and these `ncf_train_config` values."""
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    cfg = json.loads(meta["ncf_train_config"])
    model = json.loads(meta["ncf_model_config"])
    return (int(meta["ncf_epoch"]) == epoch
            and (factors is None or model["factors"] == factors)
            and all(math.isclose(float(cfg[k]), float(v), rel_tol=1e-6)
                    for k, v in train.items()))


def flag_values(flags):
    """`--l2 0.005 --negatives 8` → {"l2": "0.005", "negatives": "8"} (ncf_train_config's
    names, for the flags that are stored there)."""
    names = {"--lr": "lr", "--l2": "l2", "--negatives": "negatives",
             "--unobserved-weight": "unobserved_weight"}
    return {names[k]: v for k, v in zip(flags[::2], flags[1::2]) if k in names}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", required=True)
    p.add_argument("--validation-seeds", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--ease-l2", default="")
    p.add_argument("--ease-weights", default="")
    p.add_argument("--ease-users-l2", default="")
    p.add_argument("--ease-users-weights", default="")
    p.add_argument("--threads", default="2")
    p.add_argument("--factors", default="192")
    p.add_argument("--mf-flags", default="--lr 0.002 --l2 0.005 --negatives 8")
    p.add_argument("--ials-flags", default="--l2 0.007 --unobserved-weight 0.3 --ials-solver exact")
    a = p.parse_args()
    b, work, out = a.bin, a.work, a.out
    ds = f"{work}/data"
    vseeds = [int(v) for v in a.validation_seeds.split()]
    if not vseeds or not a.seeds.split():
        sys.exit("ensemble-ml1m.py: needs at least one seed and one validation seed")
    nums = lambda s: [float(x) for x in s.split()]
    fmt = lambda x: f"{x:g}"

    def vfile(name, v):
        return f"{work}/{name}-validation{'' if v == 0 else f'-v{v}'}.safetensors"

    def epochs(model):
        # The epoch count mf-ml1m.sh chose on validation split 0 (its test runs' count).
        return last_epoch(f"{out}/{model}/test-s{a.seeds.split()[0]}.jsonl")["epoch"] + 1

    # Validation models of MF and iALS on every split at the chosen epochs (mf-ml1m.sh's split-0
    # model is reused when it was trained so; anything else found is stale and retrained).
    hp = {"mf": a.mf_flags.split(), "ials": a.ials_flags.split()}
    flags = {
        "mf": ["--model", "mf", "--factors", a.factors] + hp["mf"]
              + ["--negative-mode", "approximate", "--batch-size", "1048576"],
        "ials": ["--model", "ials", "--factors", a.factors] + hp["ials"],
    }
    for model in ("mf", "ials"):
        for v in vseeds:
            # MF files hold two more columns (the biases) than its factors.
            width = int(a.factors) + (2 if model == "mf" else 0)
            if fresh(vfile(model, v), epochs(model) - 1, width, flag_values(hp[model])):
                continue
            print(f"{model}: validation split {v}, {epochs(model)} epochs", file=sys.stderr)
            run([f"{b}/ncf-train", ds, "-o", vfile(model, v), "--force", "--validation",
                 "--validation-seed", str(v), "--seed", "1", "--epochs", str(epochs(model)),
                 "--save-last", "--threads", a.threads, "--no-checkpoint", "--quiet"]
                + flags[model], f"{out}/{model}/validation-v{v}.jsonl")

    def fit_ease(kind, lam, v):
        name = f"{kind}-l{fmt(lam)}"
        path = vfile(name, v)
        if not fresh(path, 0, None, {"l2": lam}):
            os.makedirs(f"{out}/{kind}", exist_ok=True)
            run([f"{b}/ncf-train", ds, "--model", kind, "--l2", str(lam), "--validation",
                 "--validation-seed", str(v), "--threads", a.threads, "--quiet",
                 "--no-checkpoint", "--force", "-o", path],
                f"{out}/{kind}/validation-l{fmt(lam)}{'' if v == 0 else f'-v{v}'}.jsonl")
        return name

    def score(members):
        """Mean validation HR@10 / NDCG@10 over the splits of [(name, weight), ...]."""
        hr, ndcg = [], []
        for v in vseeds:
            r = json.loads(run([f"{b}/ncf-eval", ds] + [vfile(n, v) for n, _ in members]
                               + ["--weights", ",".join(fmt(w) for _, w in members),
                                  "--validation", "--validation-seed", str(v)]))
            hr.append(r["hr"])
            ndcg.append(r["ndcg"])
        return {"hr": st.mean(hr), "ndcg": st.mean(ndcg), "hr_splits": hr,
                "ndcg_splits": ndcg}

    key = lambda r: (r["hr"], r["ndcg"])

    # Stage 1: the iALS weight.
    rows = []
    for w in nums(a.weights):
        rows.append(dict(weight=w, **score([("mf", 1.0), ("ials", w)])))
    with open(f"{out}/ensemble-validation.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    best = max(rows, key=key)
    members = [("mf", 1.0), ("ials", best["weight"])]
    chosen = {"ials_weight": best["weight"]}
    print(f"iALS weight {fmt(best['weight'])}: validation HR {best['hr']:.4f} NDCG "
          f"{best['ndcg']:.4f}", file=sys.stderr)

    # Stages 2 and 3: EASE item-item, then user-user, each only if it beats the ensemble so far.
    for kind, lams, weights in (("ease", a.ease_l2, a.ease_weights),
                                ("ease-users", a.ease_users_l2, a.ease_users_weights)):
        rows = []
        for lam in nums(lams):
            name = None
            for v in vseeds:
                name = fit_ease(kind, lam, v)
            for w in nums(weights):
                rows.append(dict(l2=lam, weight=w, **score(members + [(name, w)])))
        with open(f"{out}/ensemble-{kind}-validation.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        top = max(rows, key=key) if rows else None
        if top is None or key(top) <= key(best):
            print(f"{kind}: not taken", file=sys.stderr)
            continue
        best = top
        members.append((f"{kind}-l{fmt(top['l2'])}", top["weight"]))
        chosen[kind] = {"l2": top["l2"], "weight": top["weight"]}
        print(f"{kind}: λ {fmt(top['l2'])} weight {fmt(top['weight'])}: validation HR "
              f"{top['hr']:.4f} NDCG {top['ndcg']:.4f}", file=sys.stderr)

    # The test file: the EASE models have no seed (one fit each).
    test = {}
    for kind in ("ease", "ease-users"):
        if kind in chosen:
            os.makedirs(f"{out}/{kind}", exist_ok=True)
            test[kind] = f"{work}/{kind}-test.safetensors"
            run([f"{b}/ncf-train", ds, "--model", kind, "--l2", str(chosen[kind]["l2"]),
                 "--threads", a.threads, "--quiet", "--no-checkpoint", "--force", "-o",
                 test[kind]], f"{out}/{kind}/test.jsonl")
    runs = []
    for seed in a.seeds.split():
        files = {"mf": f"{work}/mf-test-s{seed}.safetensors",
                 "ials": f"{work}/ials-test-s{seed}.safetensors"}
        ev = lambda ms: json.loads(run(
            [f"{b}/ncf-eval", ds] + [files.get(n) or test[kind_of(n)] for n, _ in ms]
            + ["--weights", ",".join(fmt(w) for _, w in ms)]))
        pair, full = ev(members[:2]), ev(members)
        line = {"seed": int(seed), "members": [[n, w] for n, w in members],
                "hr": full["hr"], "ndcg": full["ndcg"],
                "mf_ials_hr": pair["hr"], "mf_ials_ndcg": pair["ndcg"]}
        for model in ("mf", "ials"):
            r = last_epoch(f"{out}/{model}/test-s{seed}.jsonl")
            line.update({f"{model}_hr": r["hr"], f"{model}_ndcg": r["ndcg"]})
        for kind in test:
            r = last_epoch(f"{out}/{kind}/test.jsonl")
            k = kind.replace("-", "_")
            line.update({f"{k}_hr": r["hr"], f"{k}_ndcg": r["ndcg"]})
        runs.append(line)
        print(json.dumps(line), file=sys.stderr)
    with open(f"{out}/runs.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in runs)

    def ms(k):
        v = [r[k] for r in runs]
        return f"{st.mean(v):.4f} ± {st.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"
    names = {"mf": "MF", "ials": "iALS", "ease": "EASE", "ease-users": "EASE (user-user)"}
    with open(f"{out}/summary.md", "w") as f:
        desc = ", ".join(f"{names[kind_of(n)]}"
                         + (f" λ {n.rsplit('-l', 1)[1]}" if "-l" in n else "") + f" × {fmt(w)}"
                         for n, w in members)
        f.write(f"{len(runs)} seeds, last epochs on the test file; members and weights chosen on "
                f"validation splits {a.validation_seeds} (mean HR@10, then NDCG@10): {desc}; "
                f"validation HR@10 {best['hr']:.4f}, NDCG@10 {best['ndcg']:.4f}.\n\n")
        f.write("| model | HR@10 | NDCG@10 |\n|---|---|---|\n")
        f.write(f"| MF | {ms('mf_hr')} | {ms('mf_ndcg')} |\n")
        f.write(f"| iALS | {ms('ials_hr')} | {ms('ials_ndcg')} |\n")
        for kind in test:
            k = kind.replace("-", "_")
            f.write(f"| {names[kind]} (no seed: one model) | {runs[0][k + '_hr']:.4f} | "
                    f"{runs[0][k + '_ndcg']:.4f} |\n")
        f.write(f"| MF + iALS | {ms('mf_ials_hr')} | {ms('mf_ials_ndcg')} |\n")
        if len(members) > 2:
            f.write(f"| {' + '.join(names[kind_of(n)] for n, _ in members)}"
                    f" | {ms('hr')} | {ms('ndcg')} |\n")
    print(open(f"{out}/summary.md").read())


if __name__ == "__main__":
    main()
