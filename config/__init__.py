"""Configuration: pydantic-settings models, defaults, and the example broker config.

Load with :func:`config.settings.load_settings`; see that module for the sources and
their order.
"""

from config.errors import ConfigError, TeddyError
from config.settings import Settings, load_settings

__all__ = ["ConfigError", "Settings", "TeddyError", "load_settings"]
