"""Library workflows: plain functions the stages call (a GRAFT round, the evaluation protocol, fine-tuning)."""
