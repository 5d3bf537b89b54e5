"""`python -m wsi_assets.submit`: the issue's name for wsi_assets.cli.submit."""

from wsi_assets.cli.submit import main

if __name__ == "__main__":
    main()
