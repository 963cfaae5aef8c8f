"""raybench: person re-identification models x datasets on Ray."""

__version__ = "0.1.0"
