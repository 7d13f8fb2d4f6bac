"""Talking to the Hugging Face Hub: publish an output directory, fetch and verify one.

``resolve`` is the one place the endpoint and token are looked up (from huggingface_hub's
configuration), and only the CLI calls it; everything else here takes them as arguments.
``errors`` is the one place Hub client errors become ``UserError``s.
"""
