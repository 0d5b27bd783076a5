"""Unit tests of the format, natively (``python -m unittest``, after
``componentize-py -d wit -w plugin bindings .``); ``cases.json`` runs the built
component through the real host (``statushook plugin-test --cases``)."""

import unittest

from render import render
from wit_world.imports.types import Status, StatusEvent


def event(status: Status) -> StatusEvent:
    return StatusEvent(
        id="evt-1",
        bot_id="acme",
        message_id="wamid.TEST",
        status=status,
        timestamp=1_777_325_700,
        recipient="5939800000000",
        sender=None,
        channel_name=None,
        campaign=None,
        template=None,
        reply=None,
        error=None,
        final=True,
    )


class RenderTest(unittest.TestCase):
    def test_a_read_status_becomes_a_message_event(self):
        body = render(event(Status.READ), {})
        self.assertEqual(body["event"], "message.read")
        self.assertEqual(body["at"], "2026-04-27T21:35:00Z")
        self.assertNotIn("error", body)

    def test_disconnected_is_dropped_and_the_prefix_is_a_setting(self):
        self.assertIsNone(render(event(Status.DISCONNECTED), {}))
        body = render(event(Status.SENT), {"prefix": "wa"})
        self.assertEqual(body["event"], "wa.sent")

    def test_failures_carry_a_default_text_in_canonical_spelling(self):
        body = render(event(Status.NUMBER_NOT_FOUND), {})
        self.assertEqual(body["event"], "message.number_not_found")
        self.assertEqual(body["error"], {"code": None, "text": "Number not found on WhatsApp"})


if __name__ == "__main__":
    unittest.main()
