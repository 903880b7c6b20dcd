"""Command-line programs: thin layers over library functions."""
