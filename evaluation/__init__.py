"""Evaluation: statistics of AI and reader performance (pure core in ``evaluation.stats``) and their commands."""
