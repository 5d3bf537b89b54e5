"""A slide's results as one whole set: staged per run, published in one step, confined to the user's folder."""
