"""Monitoring: what a model sees and does in production, compared with what it was trained on."""
