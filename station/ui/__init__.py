"""The station screens (PySide6): the only station package that imports Qt."""
