"""Synthetic pathology: lesion-mask generators, lesion painters, and the protocol that compares them by the Dice
of a segmenter trained with their output (`medinpaint lesions masks | paint | protocol`)."""
