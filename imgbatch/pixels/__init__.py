"""Bytes in, one standardized uint8 (S, S, 3) array out: decoding, orientation, alpha, resize.
Everything in this folder decides pixels, so its source is part of every partition fingerprint."""
