pytest_plugins = ["tests.testbed.fixtures", "tests.postgres"]
