"""The ``simdist`` command line (see ``simdist --help``)."""
