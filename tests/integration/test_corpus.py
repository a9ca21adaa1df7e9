"""Real input: every message of the shared corpus through LMTP."""
import collections
import hashlib
import os
import re
import unittest

from corpus import as_mta_sends, list_corpus, mime_corpus
from harness import (CORPUS, EngineTest, LMTP, quire, split_message,
                     wait_for)

MEMBERS = ["one@example.com", "two@example.net", "three@example.org"]


class CorpusTest(EngineTest):

    def setUp(self):
        if not os.path.isdir(os.path.join(CORPUS, "lists")):
            self.fail("no corpus at %s: clone Quire beside shared/, or "
                      "set QUIRE_CORPUS to the corpus folder" % CORPUS)
        super().setUp()
        self.make_list("corpus@example.org", MEMBERS)
        # Real senders are not members; let the posts through so that
        # every body can be compared, and keep Mailman's other rules.
        for k, v in (("default_nonmember_action", "accept"),
                     ("max_message_size", "0"),
                     ("accept_size_limit", "0")):
            quire(self.db, "list", "set", "corpus@example.org", k, v)
        self.start_engine()

    def replay(self, messages):
        """Send each message; the LMTP reply of each, by name."""
        replies = {}
        c = LMTP(self.engine.lmtp_port)
        for name, sender, raw in messages:
            data = as_mta_sends(raw)
            # An MTA's envelope sender is an address or empty.
            if not re.match(r"^[^@\s<>]+@[^@\s<>]+$", sender):
                sender = "sender@example.com"
            codes, data_replies = c.send(sender, ["corpus@example.org"],
                                         data)
            replies[name] = (codes[0], data_replies[0] if data_replies
                             else "", data)
        c.close()
        return replies

    def settle(self):
        wait_for("every stage to drain", lambda: self.db.scalar(
            "SELECT (SELECT count(*) FROM quire.queue WHERE stage <> "
            "'shunt') + (SELECT count(*) FROM quire.delivery)") == "0",
            timeout=600)

    def account(self, replies):
        """accepted + held + shunted (+ refused with a reason, + the
        byte-identical repeats the MTA-retry rule folds into one post)
        must be every message sent."""
        status = collections.Counter(
            r[0] for r in self.db.query(
                "SELECT status FROM quire.post"))
        dup = sum(1 for r in replies.values() if "Already queued" in r[1])
        refused = [n for n, r in replies.items()
                   if not r[1].startswith("250 ")]
        sent = len(replies)
        print("\ncorpus: sent=%d accepted=%d held=%d shunted=%d "
              "discarded=%d duplicate=%d refused=%d" % (
                  sent, status["accepted"], status["held"],
                  status["shunted"], status["discarded"], dup,
                  len(refused)))
        self.assertEqual(status["accepted"] + status["held"] +
                         status["shunted"] + dup + len(refused), sent)
        self.assertEqual(status["queued"], 0)
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.post WHERE status IN "
            "('held', 'shunted') AND coalesce(reason, '') = ''"), "0")
        log = self.engine.log_text()
        self.assertEqual(log.count("event=post_held"), status["held"])
        self.assertEqual(log.count("event=post_shunted"), status["shunted"])
        self.assertNotIn("event=worker_exited", log)
        return status, refused

    def test_list_archives(self):
        messages = list_corpus()
        self.assertGreater(len(messages), 2000)
        replies = self.replay(messages)
        self.settle()
        status, refused = self.account(replies)
        self.assertEqual(refused, [])
        # Every delivered body is the sent body, byte for byte: the
        # multiset of bodies at the sink is each accepted post's body
        # once per member.
        accepted = set(r[0] for r in self.db.query(
            "SELECT id FROM quire.post WHERE status = 'accepted'"))
        want = collections.Counter()
        for name, (code, reply, data) in replies.items():
            if reply.startswith("250 2.0.0 Queued as post ") and \
                    reply.rsplit(" ", 1)[1] in accepted:
                want[hashlib.sha256(split_message(data)[1]).digest()] += \
                    len(MEMBERS)
        got = collections.Counter()
        per_member = collections.Counter()
        for c in self.sink.index():
            body = split_message(self.sink.message(c))[1]
            got[hashlib.sha256(body).digest()] += 1
            per_member[c["rcpt"]] += 1
        self.assertEqual(got, want)
        self.assertEqual(dict(per_member),
                         {m: status["accepted"] for m in MEMBERS})

    def test_malformed_mime(self):
        messages = mime_corpus()
        self.assertGreater(len(messages), 300)
        replies = self.replay(messages)
        self.settle()
        status, refused = self.account(replies)
        for name in refused:
            code, reply, data = replies[name]
            print("refused %s: %s" % (name, reply))
            self.assertRegex(reply, r"^5\d\d 5\.\d\.\d ", name)
        self.assertEqual(len(self.sink.index()),
                         status["accepted"] * len(MEMBERS))


if __name__ == "__main__":
    unittest.main()
