"""Sub-commands of the ``watchword`` CLI, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` (taking the
parsed namespace, returning the exit status). Modules import their heavy dependencies inside
``func`` so that ``watchword --help`` stays fast.
"""
