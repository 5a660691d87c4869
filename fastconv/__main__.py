"""``python -m fastconv``: the ``fastconv`` command line."""

from fastconv_cli.main import main

if __name__ == "__main__":
    main()
