"""Floor 1: settings, geography, vocabularies and error types shared by every layer."""
