"""What the three services share: settings from the environment, server wiring, interceptors."""
