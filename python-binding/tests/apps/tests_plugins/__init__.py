"""Third-party plugins for the tests, loaded from configuration files as
``tests_plugins.MODULE:CLASS``."""
