"""The wire between the language server and the model worker: framed JSON messages (messages.py) and
where a shared worker's socket lives (sockets.py). Standard library only; both processes import it."""
