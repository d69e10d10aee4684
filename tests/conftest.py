pytest_plugins = ["tests.fixtures_s3", "tests.fixtures_prom"]
