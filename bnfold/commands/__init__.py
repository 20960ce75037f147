"""One file per CLI command; each only parses options, calls the library and renders."""
