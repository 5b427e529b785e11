"""The remote backend: completions from a serving engine (vLLM, NVIDIA NIM) over HTTP; see client.py."""
