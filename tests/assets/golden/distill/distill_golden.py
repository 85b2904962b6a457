#!/usr/bin/env python3
"""Golden values for the distillation head (EdgeTune.Kernels Reference.Distill / IComputeBackend.Distill).

Float64 PyTorch, TRL's generalized_jsd_loss formulas (trl/experimental/gkd/gkd_trainer.py) applied over the
teacher's top-k support: student logits gathered at the teacher's ids and log-softmaxed there, teacher log-probs
renormalised over its top k and rescaled by the temperature (p_T ∝ p^(1/T)), loss = (1 − α)·CE + α·T²·Σ_rows D.
Rows whose target is −1 carry no loss. Inputs are closed-form so that the C# test rebuilds them exactly.

    python3 distill_golden.py > expected.json      (Debian: apt-get install python3-torch)
"""
import json
import math

import torch
import torch.nn.functional as F

N, C, V, K = 4, 5, 13, 6
TARGETS = [3, -1, 7, 0]
CASES = [  # (name, divergence, beta, temperature, alpha)
    ("forward_kl", "forward_kl", 0.0, 1.0, 1.0),
    ("reverse_kl", "reverse_kl", 1.0, 1.0, 1.0),
    ("jsd_0.5", "jsd", 0.5, 1.0, 1.0),
    ("jsd_0.1_t2_a0.7", "jsd", 0.1, 2.0, 0.7),
    ("forward_kl_t2_a0.5", "forward_kl", 0.0, 2.0, 0.5),
    ("reverse_kl_t0.5_a0.3", "reverse_kl", 1.0, 0.5, 0.3),
]


def inputs():
    hidden = torch.tensor([[0.8 * math.sin(1.3 * r + 0.7 * j + 0.1) for j in range(C)] for r in range(N)], dtype=torch.float64)
    head = torch.tensor([[0.9 * math.cos(0.9 * v - 0.4 * j + 0.2) for j in range(C)] for v in range(V)], dtype=torch.float64)
    teacher = torch.tensor([[2.0 * math.sin(0.61 * r * v + 0.37 * v + r + 0.5) for v in range(V)] for r in range(N)], dtype=torch.float64)
    # top k by value, ties to the lower id (none occur with these inputs)
    ids = torch.tensor([sorted(range(V), key=lambda v: (-teacher[r, v].item(), v))[:K] for r in range(N)])
    top = teacher.gather(1, ids)
    logprobs = top - torch.logsumexp(top, dim=1, keepdim=True)
    return hidden, head, ids, logprobs


def generalized_jsd(student_logp, teacher_logp, beta):
    # TRL's formula, per entry (reduction "none"); beta 0 and 1 are the KL endpoints as TRL defines them
    if beta == 0:
        return F.kl_div(student_logp, teacher_logp, reduction="none", log_target=True)
    if beta == 1:
        return F.kl_div(teacher_logp, student_logp, reduction="none", log_target=True)
    b = torch.tensor(beta, dtype=student_logp.dtype)
    mixture = torch.logsumexp(torch.stack([student_logp + torch.log(1 - b), teacher_logp + torch.log(b)]), dim=0)
    kl_teacher = F.kl_div(mixture, teacher_logp, reduction="none", log_target=True)
    kl_student = F.kl_div(mixture, student_logp, reduction="none", log_target=True)
    return b * kl_teacher + (1 - b) * kl_student


def case(divergence, beta, temperature, alpha):
    hidden, head, ids, logprobs = inputs()
    hidden.requires_grad_(True)
    head.requires_grad_(True)
    logits = hidden @ head.T
    targets = torch.tensor(TARGETS)
    mask = targets >= 0
    ce = F.cross_entropy(logits[mask], targets[mask], reduction="sum")
    student_logp = F.log_softmax(logits.gather(1, ids) / temperature, dim=1)
    teacher_logp = F.log_softmax(logprobs / temperature, dim=1)
    b = {"forward_kl": 0.0, "reverse_kl": 1.0}.get(divergence, beta)
    kd = temperature ** 2 * generalized_jsd(student_logp, teacher_logp, b)[mask].sum()
    loss = (1 - alpha) * ce + alpha * kd
    loss.backward()
    return {
        "divergence": divergence, "beta": beta, "temperature": temperature, "alpha": alpha,
        "cross_entropy": ce.item(), "distill": kd.item(), "loss": loss.item(),
        "d_hidden": hidden.grad.flatten().tolist(), "d_head": head.grad.flatten().tolist(),
    }


if __name__ == "__main__":
    cases = {name: case(d, b, t, a) for name, d, b, t, a in CASES}
    print(json.dumps({"n": N, "c": C, "vocab": V, "top_k": K, "targets": TARGETS, "torch": torch.__version__, "cases": cases}, indent=1))
