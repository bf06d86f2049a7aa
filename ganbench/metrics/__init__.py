"""placeholder while being written"""
from ganbench.hookspecs import hookimpl
