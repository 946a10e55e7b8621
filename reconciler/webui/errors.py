"""The errors of talking to Open WebUI: what its client raises and its callers catch.

Every failure is a :class:`WebUIError` whose message is one sentence;
:class:`WebUIUnreachable` is the transient kind (nothing answered);
:class:`WhisperUnavailable` says the voice settings were saved but the local
Whisper model could not be loaded (see there).
"""

from __future__ import annotations

from typing import Any

from reconciler.core.errors import ServiceError


class WebUIError(ServiceError):
    """Open WebUI refused or failed a request; ``message`` says why in one sentence.

    ``status`` is the HTTP status when Open WebUI answered (None when nothing
    answered or the answer was not what 0.12.4 sends); ``detail`` is Open
    WebUI's own error text, when it gave one.
    """


class WebUIUnreachable(WebUIError):
    """Nothing answered at the URL (refused, timed out, dropped): worth retrying."""


class WhisperUnavailable(WebUIError):
    """The voice settings were saved, but Open WebUI could not load its local Whisper model.

    With the STT engine "" (local) every audio update loads faster-whisper inside the
    request, downloading it from Hugging Face when it is not cached; offline, or with
    the download failing, the update answers 500 after storing the form. Open WebUI
    loads the model again at the first transcription, so the settings are in place
    and only speech-to-text is degraded. ``config`` is the voice settings as stored.
    """

    def __init__(self, message: str, *, config: dict[str, Any], status: int | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message, status=status, detail=detail)
        self.config = config
