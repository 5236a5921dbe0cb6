"""An edgescribe edge node: takes chunks from the broker, transcribes them, publishes results.

Imports only :mod:`protocol` and its own modules, never ``hub`` or ``dashboard``.
"""

__version__ = "0.1.0"
