"""ganbench-extra: variants the DCGAN paper did not consider, added to ganbench through its entry point.

The variants live in ``ganbench_extra.plugin``; the version is the distribution's (``importlib.metadata``).
"""
