"""Floor 2: Great Expectations suites built by factories, run at task time."""
