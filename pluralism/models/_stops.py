"""Stop strings for local generation, where (unlike a server) nothing cuts the text for us."""

from __future__ import annotations

from collections.abc import Sequence


def cut_at_stop(text: str, stops: Sequence[str] | None) -> str:
    cuts = [i for s in stops or [] if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


class StopFilter:
    """Streams text while catching a stop string split across pieces, stripped like `generate`.

    It holds back the last len(stop)-1 characters and any trailing whitespace, releasing them
    once later text shows they are neither a stop string nor the end of the answer.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buf = ""
        self._started = False
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self._buf += piece
        cut = cut_at_stop(self._buf, self._stops)
        if len(cut) < len(self._buf):
            self.stopped = True
            self._buf = ""
            return self._emit(cut.rstrip())
        split = max(len(self._buf) - self._hold, 0)
        out, self._buf = self._buf[:split], self._buf[split:]
        body = out.rstrip()
        self._buf = out[len(body) :] + self._buf
        return self._emit(body)

    def flush(self) -> str:
        out, self._buf = self._buf.rstrip(), ""
        return self._emit(out)

    def _emit(self, text: str) -> str:
        if not self._started:
            text = text.lstrip()
            self._started = bool(text)
        return text
