"""Property-based fuzzing of the parsers (hypothesis), sharing its oracles with fuzz/."""
