"""Readers of the labelled datasets mien is trained and evaluated on (FER+, AffectNet-8, RAF-DB, RAF-CE, UTKFace):
paths, labels and splits only; no training code."""
