#!/usr/bin/env python3
"""Reference numbers of tests/rl_optim.rs from PyTorch: five AdamW steps (torch.optim.AdamW, decoupled weight
decay) on a two-parameter model, with and without global-norm gradient clipping (torch.nn.utils.clip_grad_norm_,
as verl's actor calls it before every step).

Model: w [4] and m [2, 2] (f32); loss = sum(0.5 c w^2 + d w) + 0.3 sum(m^3), constant c, d; lr 0.1, betas
(0.9, 0.999), eps 1e-8, weight_decay 0.1. Prints, per step, the pre-clip global gradient norm, then the final
parameters, as Rust array literals to paste into the test.

Run with torch from PyPI (checked with torch 2.15):
    python3 tests/rl_optim_reference.py
"""

import torch

W0 = [0.5, -1.0, 2.0, 0.0]
M0 = [[0.3, -0.7], [1.2, 0.1]]
C = [1.0, 2.0, 0.5, 3.0]
D = [0.1, -0.2, 0.3, -0.4]


def run(max_norm):
    w = torch.tensor(W0, dtype=torch.float32, requires_grad=True)
    m = torch.tensor(M0, dtype=torch.float32, requires_grad=True)
    c = torch.tensor(C, dtype=torch.float32)
    d = torch.tensor(D, dtype=torch.float32)
    opt = torch.optim.AdamW([w, m], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    norms = []
    for _ in range(5):
        opt.zero_grad()
        loss = (0.5 * c * w * w + d * w).sum() + 0.3 * (m * m * m).sum()
        loss.backward()
        if max_norm is None:
            norms.append(float(torch.sqrt(w.grad.square().sum() + m.grad.square().sum())))
        else:
            norms.append(float(torch.nn.utils.clip_grad_norm_([w, m], max_norm)))
        opt.step()
    return norms, w.detach().flatten().tolist(), m.detach().flatten().tolist()


def lit(xs):
    return "[" + ", ".join(repr(float(x)) for x in xs) + "]"


for name, max_norm in [("UNCLIPPED", None), ("CLIPPED_1", 1.0)]:
    norms, w, m = run(max_norm)
    print(f"const {name}_NORMS: [f64; 5] = {lit(norms)};")
    print(f"const {name}_W: [f64; 4] = {lit(w)};")
    print(f"const {name}_M: [f64; 4] = {lit(m)};")
