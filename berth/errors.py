"""Errors every package may raise; the API layer maps each to Docker's HTTP status."""

from __future__ import annotations


class BerthError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidParameter(BerthError):
    status = 400


class Forbidden(BerthError):
    status = 403


class NotFound(BerthError):
    status = 404


class Conflict(BerthError):
    status = 409


class NotModified(BerthError):
    status = 304


class Unavailable(BerthError):
    status = 503


class NotImplementedHere(BerthError):
    """What Docker answers 501 to (e.g. reading the log of a container whose driver keeps none)."""

    status = 501
