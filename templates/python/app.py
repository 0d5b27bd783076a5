"""The component's entry point: what statushook calls. Keep it thin; the
format itself is in render.py, where the unit tests reach it.

How the WIT (wit/plugin.wit) maps to Python (``componentize-py bindings .``
writes the generated modules, ``wit_world``, next to this file):

- the export is a class named after the interface, ``Formatter``, with a
  ``format(self, event, settings)`` method;
- ``event`` is a ``StatusEvent`` dataclass with snake_case fields; an absent
  option is ``None``; ``status`` is the ``Status`` enum
  (``Status.NUMBER_NOT_FOUND``);
- ``settings`` is a list of ``(key, value)`` tuples;
- return ``None`` to send nothing, an ``Outgoing`` to send (``body`` is
  ``bytes``); raise ``Err("why")`` to fail: the delivery becomes a dead letter
  with that text.
"""

import json
from typing import List, Optional, Tuple

from componentize_py_types import Err  # noqa: F401 (raise Err("why") to fail)
from render import render
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import Outgoing, StatusEvent


class Formatter(exports.Formatter):
    def format(
        self, event: StatusEvent, settings: List[Tuple[str, str]]
    ) -> Optional[Outgoing]:
        body = render(event, dict(settings))
        if body is None:
            log.log(
                log.Level.DEBUG,
                f"{event.id}: {event.status.name.lower()} is not sent to this receiver",
            )
            return None
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        return Outgoing(content_type="application/json", headers=[], body=data.encode())
