"""The Jinja templates of every rendered file (configs/<area>/<file>.j2), shipped as the package
``generators.configs`` (pyproject.toml maps it here) and read by ``generators.render``."""
