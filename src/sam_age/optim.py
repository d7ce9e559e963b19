"""Ranger, as the official SAM training uses it: RAdam + Lookahead + gradient centralisation.

Per parameter and step t (betas b1, b2):
    g  = grad, minus its mean over all but the first axis when the parameter has dim > 1
    m  = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
    rho_inf = 2 / (1 - b2) - 1;   rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    if rho_t > threshold:  p -= lr * r_t / (1 - b1^t) * m / (sqrt(v) + eps)
                           r_t = sqrt((1 - b2^t)(rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    else:                  p -= lr / (1 - b1^t) * m          (momentum SGD while the variance is unreliable)
    every k steps:         slow += alpha (p - slow);  p = slow
The slow buffer starts as a copy of the weights at the first step. Everything lives in
``self.state``, so ``state_dict()`` / ``load_state_dict()`` round-trip it for resume.
"""

from __future__ import annotations

import math
from typing import Iterable, Tuple

import torch
from torch.optim import Optimizer


class Ranger(Optimizer):
    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        alpha: float = 0.5,
        k: int = 6,
        N_sma_threshhold: float = 5,
        betas: Tuple[float, float] = (0.95, 0.999),
        eps: float = 1e-5,
        weight_decay: float = 0.0,
        use_gc: bool = True,
        gc_conv_only: bool = False,
    ):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"invalid slow update rate: {alpha}")
        if not k >= 1:
            raise ValueError(f"invalid lookahead steps: {k}")
        if not lr > 0:
            raise ValueError(f"invalid learning rate: {lr}")
        if not eps > 0:
            raise ValueError(f"invalid eps: {eps}")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            k=k,
            N_sma_threshhold=N_sma_threshhold,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            use_gc=use_gc,
            gc_min_dim=3 if gc_conv_only else 1,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Ranger does not support sparse gradients")
                grad = p.grad.float()
                p32 = p.float()
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p32)
                    state["exp_avg_sq"] = torch.zeros_like(p32)
                    state["slow_buffer"] = p.detach().clone()
                if group["use_gc"] and grad.dim() > group["gc_min_dim"]:
                    grad = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)

                beta2_t = beta2**t
                n_sma_max = 2 / (1 - beta2) - 1
                n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
                if n_sma > group["N_sma_threshhold"]:
                    step_size = math.sqrt(
                        (1 - beta2_t)
                        * (n_sma - 4)
                        / (n_sma_max - 4)
                        * (n_sma - 2)
                        / n_sma
                        * n_sma_max
                        / (n_sma_max - 2)
                    ) / (1 - beta1**t)
                    update = exp_avg / exp_avg_sq.sqrt().add_(group["eps"])
                else:
                    step_size = 1.0 / (1 - beta1**t)
                    update = exp_avg
                if group["weight_decay"] != 0:
                    p32 = p32.add(p32, alpha=-group["weight_decay"] * group["lr"])
                p32 = p32.add(update, alpha=-step_size * group["lr"])
                p.copy_(p32)

                if t % group["k"] == 0:
                    slow = state["slow_buffer"]
                    slow.add_(p - slow, alpha=group["alpha"])
                    p.copy_(slow)
        return loss
