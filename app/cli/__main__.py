"""`python -m app.cli`: the `modelcert` command."""

from app.cli.main import main

main()
