"""ganbench: the DCGAN paper's architecture rules, put to the test by ablation."""

__version__ = "0.1.0"
