"""Hot-index backends: ``base`` (the contract), ``sqlite``, ``json``."""
