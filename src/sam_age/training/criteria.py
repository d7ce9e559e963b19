"""The training loss: the loss networks of a run and the original ``calc_loss``.

:class:`LossNets` builds only the networks the run's lambdas use (DEX always: the input
ages come from it) and returns the weighted total (before ``cycle_lambda``) with every
term detached for logging, named as the original logs them (``loss_id_real``, ...). The
networks themselves, held to the original's numbers, are in :mod:`sam_age.losses`.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..losses import LPIPS, AgingLoss, IDLoss, crop_face, id_loss_weights, w_norm_loss


def uses_lpips(opts) -> bool:
    return opts.lpips_lambda > 0 or opts.lpips_lambda_crop > 0


class LossNets:
    def __init__(self, opts, files, device):
        """``files``: the resolved weight paths (``dex``, ``ir_se50``, ``alexnet``, ``lpips_lin``)."""
        self.opts = opts
        self.aging = AgingLoss(files.dex, device=device)  # input ages are needed in every run
        self.id = IDLoss(files.ir_se50, device=device) if opts.id_lambda > 0 else None
        self.lpips = LPIPS(files.alexnet, files.lpips_lin, device=device) if uses_lpips(opts) else None

    def __call__(
        self, x, y, y_hat, codes, latent_avg, target_ages, input_ages, no_aging: bool, data_type: str
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The original ``calc_loss``: (weighted total before cycle_lambda, detached terms)."""
        o = self.opts
        terms: Dict[str, torch.Tensor] = {}
        loss = y_hat.new_zeros((), dtype=torch.float32)
        aging_pass = data_type == "real" and not no_aging
        if o.id_lambda > 0:
            weights = id_loss_weights((target_ages - input_ages).abs()) if o.use_weighted_id_loss else None
            loss_id, improvement = self.id.loss_and_improvement(y_hat, y, x, weights)
            terms[f"loss_id_{data_type}"] = loss_id.detach()
            terms[f"id_improve_{data_type}"] = improvement
            loss = loss + loss_id * o.id_lambda
        if o.l2_lambda > 0:
            loss_l2 = F.mse_loss(y_hat, y)
            terms[f"loss_l2_{data_type}"] = loss_l2.detach()
            loss = loss + loss_l2 * (o.l2_lambda_aging if aging_pass else o.l2_lambda)
        if o.lpips_lambda > 0:
            loss_lpips = self.lpips(y_hat, y)
            terms[f"loss_lpips_{data_type}"] = loss_lpips.detach()
            loss = loss + loss_lpips * (o.lpips_lambda_aging if aging_pass else o.lpips_lambda)
        if o.lpips_lambda_crop > 0:
            loss_lpips_crop = self.lpips(crop_face(y_hat), crop_face(y))
            terms[f"loss_lpips_crop_{data_type}"] = loss_lpips_crop.detach()
            loss = loss + loss_lpips_crop * o.lpips_lambda_crop
        if o.l2_lambda_crop > 0:
            loss_l2_crop = F.mse_loss(crop_face(y_hat), crop_face(y))
            terms[f"loss_l2_crop_{data_type}"] = loss_l2_crop.detach()
            loss = loss + loss_l2_crop * o.l2_lambda_crop
        if o.w_norm_lambda > 0:
            loss_w = w_norm_loss(codes, latent_avg)
            terms[f"loss_w_norm_{data_type}"] = loss_w.detach()
            loss = loss + loss_w * o.w_norm_lambda
        if o.aging_lambda > 0:
            loss_aging = self.aging(y_hat, target_ages)
            terms[f"loss_aging_{data_type}"] = loss_aging.detach()
            loss = loss + loss_aging * o.aging_lambda
        terms[f"loss_{data_type}"] = loss.detach()
        return loss, terms
