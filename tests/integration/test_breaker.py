"""Attacks on the promises of README "What Quire promises" that the crash,
failover, hosts, poison and hostile tests do not make.

A copy is sent twice only for a batch whose worker died, lost its
database or was cut off: a healthy out worker talking to a relay that is
slow but within --smtp-timeout must not have its own batch taken over.
"""
import collections

from harness import EngineTest, LMTP, crlf, wait_for

MEMBERS = ["anne@example.com", "bob@example.net", "carl@example.org"]


class SlowRelayTest(EngineTest):
    # The first transaction's final dot is answered after 4 s, well
    # within --smtp-timeout (60 s) but past a 2 s lease; the ones after
    # it at once.  Nothing dies, nothing loses the database.
    sink_args = ("--delay-data", "4", "--delay-count", "1")
    engine_args = ("--lease", "2", "--out-connections", "2")

    def test_slow_answer_within_timeout_sends_each_copy_once(self):
        self.make_list("dev@lists.example.org", MEMBERS)
        self.start_engine()
        c = LMTP(self.engine.lmtp_port)
        _, replies = c.send("anne@example.com", ["dev@lists.example.org"],
                            crlf(b"From: anne@example.com\n"
                                 b"To: dev@lists.example.org\n"
                                 b"Subject: slow relay\n"
                                 b"Message-ID: <slow1@example.com>\n\n"
                                 b"body\n"))
        c.close()
        self.assertEqual(replies, ["250 2.0.0 Queued as post 1"])
        wait_for("every copy recorded", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.delivery") == "0")
        # Every batch leased has had its answer recorded (or refused):
        # the slow one too, when it was taken over meanwhile.
        wait_for("every batch answered", lambda: (
            lambda log: log.count("event=delivery_leased") ==
            log.count("event=delivery_batch"))(self.engine.log_text()))
        copies = collections.Counter(e["rcpt"] for e in self.sink.index())
        log = self.engine.log_text()
        print("\ncopies per member: %s; batches leased: %d; "
              "lease_lost lines: %d" % (
                  dict(copies), log.count("event=delivery_leased"),
                  log.count("event=delivery_lease_lost")))
        self.assertEqual(copies, collections.Counter(
            {m: 1 for m in MEMBERS}))
        self.assertNotIn("event=delivery_lease_lost", log)
