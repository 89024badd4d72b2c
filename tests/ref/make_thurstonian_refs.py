#!/usr/bin/env python3
"""PyTorch reference for ethos' Thurstonian fit (crates/evals/src/thurstonian.rs), written from
the Utility Engineering specification (Mazeika et al. 2025, `fit_thurstonian_model`): means
standardised inside the model at every step (mean 0, sample std + 1e-5), variances exp(s)
scaled by 1/(std + 1e-5 + 1e-5)^2, P = Phi(delta / sqrt(var_A + var_B + 1e-5)), mean binary
cross-entropy against soft labels, torch.optim.Adam(lr=0.01), 1000 full-batch epochs.
Autograd here checks the hand-written gradients there. float64 throughout; the initial
parameters are written to the fixture so both start from the same point.

    python tests/ref/make_thurstonian_refs.py     # writes tests/fixtures/utility/thurstonian_ref.json
"""
import json

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(7)
N, E = 40, 160
pairs = set()
while len(pairs) < E:
    a, b = rng.choice(N, 2, replace=False)
    pairs.add((int(min(a, b)), int(max(a, b))))
pairs = sorted(pairs)
true_u = rng.normal(size=N)
labels = [float(np.clip(1 / (1 + np.exp(-(true_u[a] - true_u[b]) * 2)) + rng.normal(0, 0.1), 0, 1)) for a, b in pairs]
mu0 = rng.normal(0, 0.01, N)
s0 = rng.normal(0, 0.01, N)

mu = torch.nn.Parameter(torch.tensor(mu0, dtype=torch.float64))
s = torch.nn.Parameter(torch.tensor(s0, dtype=torch.float64))
opt = torch.optim.Adam([mu, s], lr=0.01)
ia = torch.tensor([a for a, _ in pairs])
ib = torch.tensor([b for _, b in pairs])
y = torch.tensor(labels, dtype=torch.float64)
normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))


def standardised():
    std = torch.std(mu) + 1e-5
    mu_n = (mu - torch.mean(mu)) / std
    s2_n = torch.exp(s) * (1 / (std + 1e-5)) ** 2
    return mu_n, s2_n


for epoch in range(1000):
    opt.zero_grad()
    mu_n, s2_n = standardised()
    p = normal.cdf((mu_n[ia] - mu_n[ib]) / torch.sqrt(s2_n[ia] + s2_n[ib] + 1e-5))
    loss = F.binary_cross_entropy(p, y)
    loss.backward()
    opt.step()

with torch.no_grad():
    mu_n, s2_n = standardised()
    p = normal.cdf((mu_n[ia] - mu_n[ib]) / torch.sqrt(s2_n[ia] + s2_n[ib] + 1e-5)).numpy()
pc = np.clip(p, 1e-5, 1 - 1e-5)
yv = np.array(labels)
out = {
    "n": N, "edges": [[a, b, l] for (a, b), l in zip(pairs, labels)],
    "mu0": mu0.tolist(), "s0": s0.tolist(),
    "mean": mu_n.numpy().tolist(), "variance": s2_n.numpy().tolist(),
    "log_loss": float(-np.mean(yv * np.log(pc) + (1 - yv) * np.log(1 - pc))),
    "accuracy": float(np.mean((pc >= 0.5) == (yv >= 0.5))),
    "torch": torch.__version__,
}
with open("tests/fixtures/utility/thurstonian_ref.json", "w") as f:
    json.dump(out, f, indent=1)
print(out["log_loss"], out["accuracy"])
