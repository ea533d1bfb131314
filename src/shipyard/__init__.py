"""shipyard: take a trained model to a fast, versioned, monitored production endpoint."""

__version__ = "0.1.0"
