"""Floor 5: the ``isoloir`` command. One module per command group; rendering happens here only."""
