"""The experiment spec: its schema, loading YAML with overrides, sweep checks and the run matrix.

Import from the modules themselves (``addrop_cli.spec.load``, ``.schema``, ``.matrix``): this
package re-exports nothing, so each name has one home.
"""
