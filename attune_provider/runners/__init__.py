"""One module per runner type; `registry.get_runner` picks one by `runner_type`."""
