import logging

__version__ = "2.2.0"

_log: logging.Logger = logging.getLogger(__name__)
