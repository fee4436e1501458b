"""The engine behind a notebook cell, without IPython.

Options, parameter binding, messages, progress, the per-kernel session, the
named connections and background jobs. The magic (:mod:`lunepool_magic.magic`)
only parses nothing, prints and dispatches: everything here can be driven and
tested without a shell.
"""
