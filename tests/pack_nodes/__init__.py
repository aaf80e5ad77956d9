"""The node tests: a package, so that its conftest and helpers never shadow the modules of tests/ itself."""
