"""The ``ast`` commands, one module each (as huggingface_hub's ``cli/download.py``).

Each command function takes its flags (declared in ``params``), checks what involves two flags at once
(a ``UsageError`` that names them), builds its options and its ``ModelSpec`` by keyword, calls one
documented core function and renders the result. ``cli.py`` registers them. A module here imports its
core inside the command function: importing the app imports no torch, so ``--help`` and shell
completion stay instant.
"""
