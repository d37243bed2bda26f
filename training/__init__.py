"""Training stages that produce arms (SFT, online DPO, RLMT) and shared log-prob utilities."""
