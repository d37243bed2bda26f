"""Built-in judges. Each declares its ``--judge-option``s as ``harness.options.Option``s."""
