"""Attacks on the promises of README "What Quire promises" that the crash,
failover, hosts, poison and hostile tests do not make.

- A copy is sent twice only for a batch whose worker died, lost its
  database or was cut off: a healthy out worker talking to a relay that
  is slow but within --smtp-timeout must not have its batch taken over.
- `quire migrate` run while an engine works must not make the engine's
  transactions fail (an LMTP 451, a stage try counted as failed).
"""
import collections
import threading
import time

from harness import (EngineTest, LMTP, crlf, headers_of, quire,
                     split_message, wait_for)

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


class LongStatementTest(EngineTest):
    """One of the out worker's statements waits on a lock for longer than
    --lease while its other batches are in flight: their leases run out
    unrenewed, and the worker's next claim must not hand it its own
    batches to send again."""
    # Each batch one copy; their answers held 3 s, past the 2 s lease.
    sink_args = ("--delay-data", "3", "--delay-count", "4")
    engine_args = ("--lease", "2", "--out-connections", "4")

    def test_a_stalled_worker_does_not_take_its_own_batches(self):
        self.make_list("dev@lists.example.org", MEMBERS + [
            "dora@example.com"])
        quire(self.db, "list", "set", "dev@lists.example.org",
              "max_recipients", "1")
        self.start_engine()
        c = LMTP(self.engine.lmtp_port)
        _, replies = c.send("anne@example.com", ["dev@lists.example.org"],
                            crlf(b"From: anne@example.com\n"
                                 b"Subject: stall\n\nbody\n"))
        c.close()
        self.assertEqual(replies, ["250 2.0.0 Queued as post 1"])
        wait_for("four batches at the relay, answers held",
                 lambda: len(self.sink.index()) == 4)
        # The first record waits here for 6 s, three leases.
        self.db.query("BEGIN; LOCK TABLE quire.delivery_log IN SHARE MODE;"
                      " SELECT pg_sleep(6); COMMIT;")
        wait_for("every copy recorded", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.delivery") == "0")
        copies = collections.Counter(e["rcpt"] for e in self.sink.index())
        log = self.engine.log_text()
        self.assertEqual(copies, collections.Counter(
            {m: 1 for m in MEMBERS + ["dora@example.com"]}))
        self.assertEqual(log.count("event=delivery_leased"), 4)
        self.assertNotIn("event=delivery_lease_lost", log)


class MigrateWhileRunningTest(EngineTest):
    """`quire migrate` re-applies schema/ (triggers on quire.queue and
    quire.post among it) while an engine takes a stream: the engine's
    transactions must not be the ones that fail."""

    MIGRATES = 10

    def test_migrate_under_a_stream_defers_nothing(self):
        self.make_list("dev@lists.example.org", MEMBERS)
        self.start_engine()
        done = threading.Event()
        replies = []

        def stream():
            c = LMTP(self.engine.lmtp_port)
            i = 0
            while not done.is_set() or i < 20:
                _, r = c.send("anne@example.com", ["dev@lists.example.org"],
                              crlf(b"From: anne@example.com\n"
                                   b"Subject: migrating %d\n"
                                   b"Message-ID: <mig%d@example.com>\n\n"
                                   b"body %d\n" % (i, i, i)))
                replies.append(r[0])
                i += 1
                # A stream, not a flood: each migrate meets a few posts.
                time.sleep(0.01)
            c.close()

        t = threading.Thread(target=stream)
        t.start()
        gave_way = 0
        try:
            for _ in range(self.MIGRATES):
                gave_way += quire(self.db, "migrate").stderr.decode().count(
                    "event=migrate_gave_way")
        finally:
            done.set()
            t.join()
        n = len(replies)
        print("\nmigrate: %d runs during %d posts; migrate gave way %d "
              "times; LMTP replies other than 250: %d" % (
                  self.MIGRATES, n, gave_way,
                  sum(1 for r in replies if not r.startswith("250 "))))
        self.assertEqual([r for r in replies if not r.startswith("250 ")],
                         [])
        wait_for("every copy", lambda: len(self.sink.index()) >= 3 * n)
        wait_for("every copy recorded", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.delivery") == "0")
        copies = collections.Counter(
            (e["rcpt"], [v for k, v in headers_of(split_message(
                self.sink.message(e))[0]) if k == "Subject"][0])
            for e in self.sink.index())
        self.assertEqual(len(copies), 3 * n)
        self.assertEqual(set(copies.values()), {1})
        self.assertEqual(self.db.query(
            "SELECT status, count(*) FROM quire.post GROUP BY 1"),
            [["accepted", str(n)]])
        log = self.engine.log_text()
        for bad in ("event=stage_failed", "event=lmtp_deferred",
                    "deadlock"):
            self.assertNotIn(bad, log)
