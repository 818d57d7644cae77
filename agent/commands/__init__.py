"""Sub-commands of the ``watchword`` CLI, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` (taking the
parsed namespace, returning the exit status). Modules import their heavy dependencies inside
``func`` so that ``watchword --help`` stays fast.

The exit statuses live here rather than in :mod:`agent.cli`, which imports the command modules: a
command never imports the CLI back.
"""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
