#!/usr/bin/env python3
"""Opt-in check: a model written by ncf-train loads into PyTorch's NeuMF and scores identically.

Loads MODEL with safetensors.torch.load_file into the NeuMF module of the PyTorch peer
(../shared/peers/torch_neumf.py, or --peer), then compares its eval-mode scores with the scores that
`ncf-topk --all` printed for the same (user, item) pairs. Needs torch, safetensors and pyarrow
(a venv outside the repo: python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch
safetensors pyarrow).

  /tmp/torchvenv/bin/python scripts/check-torch-load.py DATASET MODEL [--ncf-topk target/release/ncf-topk]

Prints one JSON line; exit 1 when any score differs by more than 1e-5 (absolute, or relative to |score|).
"""
import argparse, importlib.util, json, os, subprocess, sys

import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('dataset')
    p.add_argument('model')
    p.add_argument('--ncf-topk', default=os.path.join(here, '..', 'target', 'release', 'ncf-topk'))
    p.add_argument('--peer', default=os.path.join(here, '..', '..', 'shared', 'peers', 'torch_neumf.py'))
    p.add_argument('-k', type=int, default=10)
    p.add_argument('--tol', type=float, default=1e-5)
    a = p.parse_args()

    spec = importlib.util.spec_from_file_location('torch_neumf', a.peer)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)

    state = load_file(a.model)
    factors = state['mf_user_embed.weight'].shape[1]
    n_users, n_items = state['mf_user_embed.weight'].shape[0], state['mf_item_embed.weight'].shape[0]
    n_lin = sum(1 for k in state if k.startswith('mlp.') and k.endswith('.weight'))
    layers = [state['mlp.0.weight'].shape[1]] + [state[f'mlp.{k}.weight'].shape[0] for k in range(n_lin)]
    model = peer.NeuMF(n_users, n_items, factors, layers, dropout=0.5)
    model.load_state_dict(state, strict=True)  # names and shapes must match exactly
    model.eval()

    users = {r: i for i, r in enumerate(pq.read_table(os.path.join(a.dataset, 'users.parquet'))['raw_id'].to_pylist())}
    items = {r: i for i, r in enumerate(pq.read_table(os.path.join(a.dataset, 'items.parquet'))['raw_id'].to_pylist())}
    out = subprocess.run([a.ncf_topk, a.dataset, a.model, '--all', '-k', str(a.k)], check=True,
                         capture_output=True, text=True).stdout
    u, i, s = [], [], []
    for line in out.splitlines():
        f = line.split('\t')
        u.append(users[f[0]]); i.append(items[f[2]]); s.append(float(f[3]))
    with torch.no_grad():
        ours = torch.tensor(s, dtype=torch.float64)
        theirs = model(torch.tensor(u), torch.tensor(i)).double()
    err = (ours - theirs).abs()
    bad = err > a.tol * torch.clamp(theirs.abs(), min=1.0)
    res = {'pairs': len(s), 'max_abs_diff': err.max().item(), 'failures': int(bad.sum()),
           'torch': torch.__version__, 'model': a.model}
    print(json.dumps(res))
    sys.exit(1 if res['failures'] or not s else 0)


if __name__ == '__main__':
    main()
