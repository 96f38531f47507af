"""verl 0.9.1's own REINFORCE++ functions on given tensors, run by verl's virtual environment (.venv-verl).

``python tests/agents/verl_reinforce_pp.py IN.pt OUT.pt``: ``IN`` holds the tensors and settings
(tests/agents/test_reinforce_pp.py writes them), ``OUT`` gets verl's results. Nothing of this project is
imported here, and this project's .venv cannot import verl (its transformers pin), hence the subprocess.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import torch
from verl import DataProto
from verl.trainer.config import AlgoConfig
from verl.trainer.ppo import core_algos
from verl.utils.torch_functional import masked_mean


def verl_apply_kl_penalty():
    """verl's ``apply_kl_penalty`` itself, compiled from ``ray_trainer.py``'s source with the names it uses:
    importing that module needs torchdata, which the verl venv does not install."""
    path = Path(core_algos.__file__).with_name("ray_trainer.py")
    source = path.read_text()
    node = next(n for n in ast.parse(source).body if getattr(n, "name", None) == "apply_kl_penalty")
    namespace = {"DataProto": DataProto, "core_algos": core_algos, "masked_mean": masked_mean, "torch": torch}
    exec(compile(ast.Module([node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["apply_kl_penalty"]


class ActorSettings(dict):
    """The fields of verl's ActorConfig that ``compute_policy_loss_vanilla`` reads (``.x`` and ``.get``)."""

    __getattr__ = dict.__getitem__


def main(source: str, target: str) -> None:
    given = torch.load(source, weights_only=False)
    mask, scores, old, ref = given["mask"], given["scores"], given["old_logp"], given["ref_logp"]
    out = {}
    # the reward manager's token-level scores: each answer's score on its last response token
    token_scores = torch.zeros_like(old)
    token_scores[torch.arange(len(scores)), mask.sum(dim=1).long() - 1] = scores
    apply_kl_penalty = verl_apply_kl_penalty()
    for kind in given["kl_penalties"]:
        data = DataProto.from_dict(
            tensors={
                "response_mask": mask,
                "token_level_scores": token_scores,
                "old_log_probs": old,
                "ref_log_prob": ref,
            }
        )
        data, _ = apply_kl_penalty(data, core_algos.FixedKLController(given["beta"]), kl_penalty=kind)
        rewards = data.batch["token_level_rewards"]
        out[f"token_rewards/{kind}"] = rewards
        for gamma in given["gammas"]:
            advantages, _ = core_algos.compute_reinforce_plus_plus_outcome_advantage(
                rewards, mask, config=AlgoConfig(gamma=gamma)
            )
            out[f"advantages/{kind}/{gamma}"] = advantages
        out[f"baseline/{kind}"], _ = core_algos.compute_reinforce_plus_plus_baseline_outcome_advantage(
            rewards, mask, index=np.array(given["index"])
        )
    # the returns' carry over a gap in the mask, on the same token rewards
    gap_mask, gap_rewards = given["gap_mask"], given["gap_rewards"]
    for gamma in given["gammas"]:
        out[f"gap/{gamma}"], _ = core_algos.compute_reinforce_plus_plus_outcome_advantage(
            gap_rewards, gap_mask, config=AlgoConfig(gamma=gamma)
        )
    # the clipped loss (dual clip), its gradient and its clip fraction
    settings = ActorSettings(given["clip"], global_batch_info={})
    for mode in given["loss_agg_modes"]:
        logp = given["logp"].clone().requires_grad_(True)
        loss, metrics = core_algos.compute_policy_loss_vanilla(
            old, logp, given["loss_advantages"], mask, loss_agg_mode=mode, config=settings
        )
        loss.backward()
        out[f"loss/{mode}"], out[f"grad/{mode}"] = loss.detach(), logp.grad
        out[f"clipfrac/{mode}"] = torch.tensor(metrics["actor/pg_clipfrac"])
    torch.save(out, target)


if __name__ == "__main__":
    main(*sys.argv[1:])
