"""Chat models on the user's hardware: an OpenAI-compatible server, or llama.cpp in-process."""
