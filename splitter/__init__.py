"""The splitter: reads ofa_assets and writes each record, exactly once, to its group's topic."""
