"""Checks flatmin's exports from Python: for every <name>.pt in DIR, torch.jit.load it and compare its logits on
<name>.inputs.pt (written by flatmin with torch::pickle_save) to flatmin's own, <name>.logits.pt.

    /usr/bin/python3 tests/models/compare_logits.py DIR     (exit 1 on any difference above 1e-5)
"""
import glob
import sys

import torch

worst = 0.0
names = sorted(glob.glob(f"{sys.argv[1]}/*.inputs.pt"))
if not names:
    sys.exit("compare_logits: no inputs in " + sys.argv[1])
for inputs_path in names:
    stem = inputs_path[: -len(".inputs.pt")]
    model = torch.jit.load(stem + ".pt")
    model.eval()
    with torch.no_grad():
        ours = model(torch.load(inputs_path))
    theirs = torch.load(stem + ".logits.pt")
    diff = (ours - theirs).abs().max().item()
    worst = max(worst, diff)
    print(f"{stem}: logits {tuple(ours.shape)}, max |python - flatmin| = {diff:.3g}")
sys.exit(0 if worst <= 1e-5 else 1)
