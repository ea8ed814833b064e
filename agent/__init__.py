"""The bear's own runtime: the conversation loop and everything it decides."""

__version__ = "0.1.0"
