"""The command line's parameters, declared once: each flag's name, metavar, help and limits.

The command modules (``commands/``) declare their parameters with these ``Annotated`` aliases, so one
flag reads the same in every command that takes it. A module a theme: ``common`` (every command),
``model`` (which model and how it runs), ``tagging`` (what a record reports), ``batch``, ``training``
(finetune, eval, stats), ``listen``, ``export``. A closed choice is typed by its ``options`` Enum:
Typer validates it, ``--help`` shows ``<a|b|c>`` and shell completion offers the values. No torch here.
"""
