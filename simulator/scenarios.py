"""The simulator's scenarios by name, in a module of their own: the command line lists them
without loading the simulator (NumPy, Arrow)."""

SCENARIOS = ("steady", "realistic")
