#!/usr/bin/env python3
"""Import a GMF or MLP weight file of the NCF authors' Keras code (He et al., WWW'17,
github.com/hexiangnan/neural_collaborative_filtering: `Pretrain/ml-1m_GMF_8_*.h5`,
`Pretrain/ml-1m_MLP_[64,32,16,8]_*.h5`) as an ncf model file, so their own pre-trained models
can be scored by `ncf-eval` and combined by `ncf-train --pretrain-gmf/--pretrain-mlp` (evidence
for docs/RESULTS.md, not part of the tools).

    scripts/keras-ncf-import.py AUTHORS.h5 TEMPLATE.safetensors OUT.safetensors

TEMPLATE is a model file of ours with the same kind and shapes, trained on the same prepared
split (`ncf-prep ../shared/datasets/ncf-ml-1m`): its header gives the tensor layout, config and
dataset fingerprints; its epoch, metrics and training config are dropped. Keras 1 stores a Dense
kernel as (in, out), ours as PyTorch's (out, in): kernels are transposed. The MLP input is
[user ‖ item] in both. Needs h5py and numpy (not used by CI).
"""
import hashlib
import json
import os
import struct
import sys

import h5py
import numpy as np


def keras_weights(path):
    """name -> array for the layers of the authors' GMF.py / MLP.py models."""
    out = {}
    with h5py.File(path, "r") as f:
        for layer in f.attrs["layer_names"]:
            g = f[layer.decode()]
            for w in g.attrs["weight_names"]:
                out[w.decode()] = np.array(g[w.decode()], dtype="<f4")
    return out


def ours(keras):
    """Our tensor names from the Keras weight names."""
    t = {"final.weight": keras["prediction_W"].T, "final.bias": keras["prediction_b"]}
    kind = "mlp" if "layer1_W" in keras else "gmf"
    pre = "mlp_" if kind == "mlp" else "mf_"
    t[pre + "user_embed.weight"] = keras["user_embedding_W"]
    t[pre + "item_embed.weight"] = keras["item_embedding_W"]
    k = 1
    while f"layer{k}_W" in keras:
        t[f"mlp.{k - 1}.weight"] = keras[f"layer{k}_W"].T
        t[f"mlp.{k - 1}.bias"] = keras[f"layer{k}_b"]
        k += 1
    return kind, t


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, template, dst = sys.argv[1:]
    try:
        kind, tensors = ours(keras_weights(src))
    except KeyError as e:
        sys.exit(f"{src}: not a GMF or MLP weight file of the authors' Keras 1 code "
                 f"(no {e} among its layers and weights)")
    with open(template, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
    meta = head.pop("__metadata__")
    config = json.loads(meta["ncf_model_config"])
    if config["kind"] != kind:
        sys.exit(f"{src} is a {kind} model, {template} a {config['kind']} one")
    if set(head) != set(tensors):
        sys.exit(f"{src}: tensors {sorted(tensors)}, {template} has {sorted(head)}")
    for name, e in head.items():
        if list(tensors[name].shape) != e["shape"]:
            sys.exit(f"{src}: {name} has shape {tensors[name].shape}, {template} {e['shape']}")
    order = sorted(head, key=lambda k: head[k]["data_offsets"][0])
    blobs = {k: np.ascontiguousarray(tensors[k], dtype="<f4").tobytes() for k in order}
    for k in ("ncf_epoch", "ncf_metrics", "ncf_train_config"):
        meta.pop(k, None)
    meta["ncf_sha256"] = json.dumps({k: hashlib.sha256(blobs[k]).hexdigest() for k in sorted(blobs)})
    new = {"__metadata__": meta}
    offset = 0
    for k in order:
        new[k] = {"dtype": "F32", "shape": head[k]["shape"],
                  "data_offsets": [offset, offset + len(blobs[k])]}
        offset += len(blobs[k])
    h = json.dumps(new).encode()
    h += b" " * (-len(h) % 8)
    tmp = dst + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for k in order:
            f.write(blobs[k])
    os.replace(tmp, dst)


if __name__ == "__main__":
    main()
