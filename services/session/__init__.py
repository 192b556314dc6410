"""SessionService: the callers' entry point; owns session and segment IDs and routes finals to translation."""
