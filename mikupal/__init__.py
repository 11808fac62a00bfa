"""MIKU-PAL: turn unlabelled video into an emotion-labelled speech dataset.

The package holds the pipeline library and the ``mikupal`` CLI. Importing it is cheap: models and heavy
libraries are imported by the backends that need them, in their ``setup()``.
"""

__version__ = "0.1.0"

#: Version of the record schema written into every ``stage.json``; bump it when a record changes shape.
SCHEMA_VERSION = 1
