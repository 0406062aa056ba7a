"""Summaries from open local models: a `Summarizer` interface, its backends, and grounding."""
