#!/usr/bin/env python3
"""How many users' held-out items tie with a candidate under an MLP model, and in how many of
those every ReLU of the last hidden layer is off (the score is then the output bias alone).
Recomputes the tower in NumPy (f32) from the model file; the authors' test files give the
candidates. Needs numpy.

    dead-relu-ties.py NCF_ML1M_DIR MODEL.safetensors...
"""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        buf = f.read()
    head.pop("__metadata__", None)
    return {k: np.frombuffer(buf[v["data_offsets"][0]:v["data_offsets"][1]], dtype="<f4")
            .reshape(v["shape"]) for k, v in head.items()}


def main():
    data, models = sys.argv[1], sys.argv[2:]
    tests = [l.split("\t") for l in open(f"{data}/ml-1m.test.rating")]
    negs = [l.rstrip("\n").split("\t")[1:] for l in open(f"{data}/ml-1m.test.negative")]
    for path in models:
        t = load(path)
        layers = sum(1 for k in t if k.startswith("mlp.") and k.endswith(".weight"))
        ties = dead = 0
        for row, ng in zip(tests, negs):
            u, gt = int(row[0]), int(row[1])
            items = np.array([gt] + [int(x) for x in ng if int(x) != gt])
            x = np.concatenate([np.repeat(t["mlp_user_embed.weight"][u][None], len(items), 0),
                                t["mlp_item_embed.weight"][items]], 1)
            for k in range(layers):
                x = np.maximum(x @ t[f"mlp.{k}.weight"].T + t[f"mlp.{k}.bias"], 0)
            s = (x @ t["final.weight"].T + t["final.bias"])[:, 0]
            if (s[1:] == s[0]).any():
                ties += 1
                dead += bool((x[0] == 0).all())
        print(f"{path}: {ties} users' held-out items tie with a candidate; "
              f"in {dead} of them every last-layer ReLU is off")


if __name__ == "__main__":
    main()
