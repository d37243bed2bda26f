"""Teacher-forced log-probabilities for training (DPO, SFT, RLMT) and NLL metrics.

The kernels are the ``hf`` backend's own (:mod:`plugins.backends.hf.kernels`, which its
``score()`` uses too); training takes them from here.
"""

from __future__ import annotations

from plugins.backends.hf.kernels import continuation_logprobs, shared_context_logprobs

__all__ = ["continuation_logprobs", "shared_context_logprobs"]
