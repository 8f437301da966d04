"""Exceptions raised by the AMI client.

One small hierarchy, so callers can write a single ``except AmiError``:

* :class:`AmiUnavailable`: no usable answer from Asterisk at all: not connected
  (yet), the connection dropped while waiting, or no response in time. Nothing is
  known about whether Asterisk executed the action.
* :class:`AmiActionFailed`: Asterisk answered and said no (``Response: Error``),
  including a refused ``Login`` and an ``Originate`` whose ``OriginateResponse``
  reports ``Failure``. :attr:`AmiActionFailed.response` holds the whole answer.
"""

from __future__ import annotations

__all__ = ["AmiActionFailed", "AmiError", "AmiUnavailable"]


class AmiError(Exception):
    """Base class of every error the AMI adapter raises."""


class AmiUnavailable(AmiError):
    """Asterisk could not be reached, the connection dropped, or it did not answer."""


class AmiActionFailed(AmiError):
    """Asterisk refused an action.

    Attributes:
        action: The action name, e.g. ``"Originate"``.
        message: Asterisk's ``Message`` header (or ``Reason`` for originate
            results), empty when it sent none.
        response: The full normalised response (never contains the login secret:
            Asterisk does not echo it).
    """

    def __init__(self, action: str, message: str, response: dict[str, str] | None = None) -> None:
        self.action = action
        self.message = message
        self.response: dict[str, str] = dict(response or {})
        super().__init__(action, message)

    def __str__(self) -> str:
        return f"{self.action} failed: {self.message or 'no message'}"
