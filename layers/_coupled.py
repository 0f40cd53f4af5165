"""Coupled rows (placeholder)."""


def project(prob, need_grad):
    raise NotImplementedError("coupled rows")


def penalized(prob, lam, need_grad):
    raise NotImplementedError("coupled rows")
