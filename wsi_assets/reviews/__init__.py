"""Pathologists' reviews: QuPath edits and slide labels imported, versioned, audited and compared with the model."""
