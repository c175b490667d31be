"""Denoiser networks built from config (no pretrained weights are downloaded)."""
