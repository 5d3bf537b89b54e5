"""Reports a person opens in a browser: a slide's result set as one self-contained HTML page."""
