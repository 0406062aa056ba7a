"""Summaries: the brief's schema, sentence rules, backends (extractive and chat-based), grounding, prompts, cache."""
