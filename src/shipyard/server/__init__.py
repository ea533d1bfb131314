"""Transports: thin adapters that convert wire types and call the data plane."""
