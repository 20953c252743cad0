# The version, stated once: setup.py and CMakeLists.txt read it from this file.
__version__ = "0.1.0"
