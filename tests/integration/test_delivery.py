"""A post from LMTP to every member over SMTP, on a real database."""
import os
import re
import signal
import socket
import subprocess
import unittest

from harness import (EngineTest, LMTP, Sink, crlf, dot_stuff, headers_of,
                     quire, split_message, wait_for)

MEMBERS = ["anne@example.com", "bob@example.net", "carol@example.org"]

POST = crlf(b"""From: Anne Person <anne@example.com>
To: bench@example.org
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from the list
Date: Fri, 04 Dec 2026 10:00:00 +0000
Message-ID: <post-1@example.com>
X-Folded: one
  two
List-Id: <forged.example.net>
Approved: secret

First line
.starts with a dot
From the start of a line
\x80 eight bit \xff
""")


def post_plain(engine, sender, subject=b"x"):
    """One short post from `sender' to bench@example.org."""
    c = LMTP(engine.lmtp_port)
    try:
        return c.send(sender, ["bench@example.org"], crlf(
            b"From: " + sender.encode() + b"\nSubject: " + subject +
            b"\n\nbody\n"))
    finally:
        c.close()


class DeliveryTest(EngineTest):

    def setUp(self):
        super().setUp()
        self.make_list("bench@example.org", MEMBERS, ["owner@example.org"])
        self.start_engine()

    def post(self, data, rcpts=("bench@example.org",),
             sender="anne@example.com"):
        c = LMTP(self.engine.lmtp_port)
        try:
            return c.send(sender, list(rcpts), data)
        finally:
            c.close()

    def test_every_member_gets_exactly_one_copy(self):
        codes, replies = self.post(POST)
        self.assertEqual(codes, [250])
        self.assertEqual(len(replies), 1)
        self.assertTrue(replies[0].startswith("250 2.0.0 Queued as post "))
        copies = self.wait_copies(3)
        self.assertEqual(sorted(c["rcpt"] for c in copies), sorted(MEMBERS))
        self.assertEqual({c["mail_from"] for c in copies},
                         {"bench-bounces@example.org"})
        in_head, in_body = split_message(POST)
        for c in copies:
            head, body = split_message(self.sink.message(c))
            self.assertEqual(body, in_body)
            self.assertEqual(headers_of(head), [
                ("From", "Anne Person <anne@example.com>"),
                ("To", "bench@example.org"),
                ("Subject", "[Bench] =?utf-8?b?R3LDvMOfZSBmcm9tIHRoZSBsaXN0?="),
                ("Date", "Fri, 04 Dec 2026 10:00:00 +0000"),
                ("Message-ID", "<post-1@example.com>"),
                ("X-Folded", "one two"),
                ("X-BeenThere", "bench@example.org"),
                ("Precedence", "list"),
                ("List-Help",
                 "<mailto:bench-request@example.org?subject=help>"),
                ("List-Id", "<bench.example.org>"),
                ("List-Owner", "<mailto:bench-owner@example.org>"),
                ("List-Post", "<mailto:bench@example.org>"),
                ("List-Subscribe", "<mailto:bench-join@example.org>"),
                ("List-Unsubscribe", "<mailto:bench-leave@example.org>"),
            ])
            # Unchanged fields keep their bytes, folding included.
            self.assertIn(b"X-Folded: one\r\n  two\r\n", head)
        # Nothing arrives twice.
        self.assertEqual(len(self.sink.index()), 3)
        rows = self.db.query(
            "SELECT email, outcome, code FROM quire.deliveries "
            "ORDER BY email")
        self.assertEqual(rows, [[m, "sent", "250"] for m in sorted(MEMBERS)])

    def test_reply_is_sent_after_commit(self):
        codes, replies = self.post(POST)
        post_id = replies[0].rsplit(" ", 1)[1]
        # The 250 came after COMMIT, so the row is visible at once.
        self.assertEqual(self.db.scalar(
            "SELECT length(m.raw) FROM quire.post p JOIN quire.message m "
            "ON m.id = p.message_id WHERE p.id = :'v1'", post_id),
            str(len(POST)))

    def test_retried_delivery_is_not_posted_twice(self):
        _, first = self.post(POST)
        self.wait_copies(3)
        _, second = self.post(POST)
        self.assertEqual(second[0], "250 2.0.0 Already queued as post " +
                         first[0].rsplit(" ", 1)[1])
        self.assertEqual(self.db.scalar("SELECT count(*) FROM quire.post"),
                         "1")
        self.assertEqual(len(self.sink.index()), 3)

    def test_unknown_list_and_subaddresses(self):
        rcpts = ["nosuch@example.org", "bench@nowhere.example",
                 "bench-bounces@example.org", "bench-request@example.org",
                 "bench-owner@example.org", "bench-join@example.org",
                 "bench-subscribe@example.org", "bench-leave@example.org",
                 "bench-unsubscribe@example.org",
                 "bench-confirm+abc123@example.org",
                 "bench-bogus@example.org", "BENCH@Example.ORG"]
        codes, replies = self.post(POST, rcpts)
        self.assertEqual(codes, [550, 550] + [250] * 8 + [550, 250])
        self.assertEqual(len(replies), 9)
        rows = self.db.query(
            "SELECT p.subaddress, q.stage, p.recipient FROM quire.post p "
            "LEFT JOIN quire.queue q ON q.post_id = p.id "
            "WHERE p.subaddress <> 'post' ORDER BY p.id")
        self.assertEqual(rows, [
            ["bounces", "bounces", "bench-bounces@example.org"],
            ["request", "command", "bench-request@example.org"],
            ["owner", "", "bench-owner@example.org"],
            ["join", "command", "bench-join@example.org"],
            ["leave", "command", "bench-leave@example.org"],
            ["confirm", "command", "bench-confirm+abc123@example.org"],
        ])
        self.assertIn("event=lmtp_rcpt_unknown", self.engine.log_text())

    def test_nonmember_post_is_held_with_reason(self):
        data = POST.replace(b"Anne Person <anne@example.com>",
                            b"<stranger@example.com>")
        data = data.replace(b"post-1@", b"post-2@")
        self.post(data, sender="stranger@example.com")
        row = wait_for("the held post", lambda: self.db.query(
            "SELECT sender, reason FROM quire.held"))
        self.assertEqual(row, [["stranger@example.com",
                                "moderated by nonmember "
                                "stranger@example.com"]])
        self.assertIn("event=post_held", self.engine.log_text())
        self.assertEqual(self.sink.index(), [])

    def test_loop_is_this_lists_own_x_beenthere(self):
        self.post(crlf(b"From: anne@example.com\nSubject: a\n"
                       b"X-BeenThere: oldbench@example.org\n\nx\n"))
        self.post(crlf(b"From: anne@example.com\nSubject: b\n"
                       b"X-BeenThere: Bench@Example.org\n\nx\n"))
        copies = self.wait_copies(3)
        self.assertIn(b"Subject: [Bench] a", self.sink.message(copies[0]))
        self.assertEqual(wait_for("the held post", lambda: self.db.query(
            "SELECT subject, reason FROM quire.held")), [
            ["b", "loop: the post already carries this list's "
                  "X-BeenThere"]])
        r = quire(self.db, "list", "set", "bench@example.org",
                  "description", "two\nlines", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, b"quire: invalid value for description: "
                         b"two\nlines (it goes into header fields: one "
                         b"line)\n")

    def test_moderated_member_and_posting_owner(self):
        self.db.psql(["-c", "UPDATE quire.member SET moderation_action = "
                      "'hold' WHERE address_id = (SELECT id FROM "
                      "quire.address WHERE email = 'bob@example.net')"])
        self.post(crlf(b"From: bob@example.net\nSubject: b\n\nx\n"),
                  sender="bob@example.net")
        self.post(crlf(b"From: Owner@Example.org\nSubject: o\n\nx\n"),
                  sender="owner@example.org")
        copies = self.wait_copies(3)
        self.assertEqual(sorted(c["rcpt"] for c in copies), sorted(MEMBERS))
        self.assertIn(b"Subject: [Bench] o", self.sink.message(copies[0]))
        self.assertEqual(wait_for("the held post", lambda: self.db.query(
            "SELECT sender, reason FROM quire.held")), [
            ["bob@example.net", "moderated by member bob@example.net"]])

    def test_owner_mail_goes_to_owners_with_verp(self):
        self.post(POST, ["bench-owner@example.org"])
        copies = self.wait_copies(1)
        self.assertEqual([(c["rcpt"], c["mail_from"]) for c in copies], [
            ("owner@example.org",
             "bench-bounces+owner=example.org@example.org")])
        # Owner mail is not decorated.
        self.assertEqual(self.sink.message(copies[0]), POST)

    def test_one_transaction_to_two_lists(self):
        self.make_list("other@example.org", ["dave@example.com"])
        quire(self.db, "list", "set", "other@example.org",
              "default_nonmember_action", "accept")
        codes, replies = self.post(POST, ["bench@example.org",
                                          "other@example.org"])
        self.assertEqual(codes, [250, 250])
        self.assertEqual(len(replies), 2)
        copies = self.wait_copies(4)
        self.assertEqual(sorted(c["rcpt"] for c in copies),
                         sorted(MEMBERS + ["dave@example.com"]))
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.message"), "1")


class StopTest(EngineTest):

    def test_stop_lets_the_message_in_progress_finish(self):
        """SIGTERM while one client is halfway through its message and
        another sits idle: the idle one hears 421 at once, the other
        sends the rest and gets its 250 before its 421, the engine
        exits 0, and the post goes out once the engine is back."""
        self.make_list("bench@example.org", MEMBERS)
        engine = self.start_engine()
        sending, idle = LMTP(engine.lmtp_port), LMTP(engine.lmtp_port)
        self.assertEqual(sending.command(
            b"MAIL FROM:<anne@example.com>")[0], 250)
        self.assertEqual(sending.command(
            b"RCPT TO:<bench@example.org>")[0], 250)
        self.assertEqual(sending.command(b"DATA")[0], 354)
        head, rest = POST[:80], POST[80:]
        sending.sock.sendall(head)
        engine.proc.send_signal(signal.SIGTERM)
        stopping = "421 4.3.2 %s Service shutting down, closing " \
                   "connection"
        code, lines = idle.reply()
        self.assertEqual(code, 421)
        self.assertRegex(lines[0], "^" + stopping % r"\S+" + "$")
        sending.sock.sendall(dot_stuff(rest) + b".\r\n")
        code, lines = sending.reply()
        self.assertRegex(lines[0], r"^250 2\.0\.0 Queued as post \d+$")
        self.assertEqual(sending.reply()[0], 421)
        self.assertEqual(engine.proc.wait(30), 0)
        for c in (sending, idle):
            self.assertEqual(c.sock.recv(1), b"")
            c.sock.close()
        log = engine.log_text()
        self.assertRegex(log, r" event=lmtp_stopping .* clients=2\n")
        self.assertRegex(log, r" event=lmtp_stopped .* clients=0\n")
        self.assertEqual(log.count(" reason=stopping "), 2)
        self.assertEqual(self.db.scalar("SELECT count(*) FROM quire.post"),
                         "1")
        self.start_engine()
        wait_for("every member's copy", lambda:
                 len(self.sink.index()) == len(MEMBERS))
        self.assertEqual(sorted(e["rcpt"] for e in self.sink.index()),
                         sorted(MEMBERS))
        self.assertEqual(self.sink.message(self.sink.index()[0]).count(
            b"\n.starts with a dot\r\n"), 1)


    def test_stop_cuts_a_stalled_client_after_ten_seconds(self):
        """A client that stalls halfway through its message keeps the
        stop waiting 10 s at most; it is then cut, nothing of its
        message is stored, and the engine still exits 0."""
        self.make_list("bench@example.org", MEMBERS)
        engine = self.start_engine()
        stalled = LMTP(engine.lmtp_port)
        stalled.command(b"MAIL FROM:<anne@example.com>")
        stalled.command(b"RCPT TO:<bench@example.org>")
        self.assertEqual(stalled.command(b"DATA")[0], 354)
        stalled.sock.sendall(POST[:80])
        engine.proc.send_signal(signal.SIGTERM)
        self.assertEqual(engine.proc.wait(30), 0)
        self.assertEqual(stalled.sock.recv(1), b"")
        stalled.sock.close()
        log = engine.log_text()
        self.assertRegex(log, r" event=lmtp_stop_cut .* clients=1 "
                         r"seconds=10\n")
        self.assertRegex(log, r" event=lmtp_stopped .* clients=1\n")
        self.assertNotIn("event=worker_exited", log)
        self.assertEqual(self.db.scalar("SELECT count(*) FROM quire.post"),
                         "0")


class OwnerlessTest(EngineTest):

    def test_owner_mail_with_no_owner_is_held(self):
        self.make_list("bench@example.org", MEMBERS)
        self.start_engine()
        c = LMTP(self.engine.lmtp_port)
        codes, _ = c.send("anne@example.com", ["bench-owner@example.org"],
                          POST)
        c.close()
        self.assertEqual(codes, [250])
        held = wait_for("the held post", lambda: self.db.query(
            "SELECT post_id, reason FROM quire.held"))
        self.assertEqual([h[1] for h in held],
                         ["no owner or moderator of the list gets mail"])
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.delivery"), "0")
        quire(self.db, "member", "add", "bench@example.org", "--role",
              "moderator", "mod@example.org")
        quire(self.db, "held", "approve", held[0][0])
        copies = self.wait_copies(1)
        self.assertEqual([(c["rcpt"], c["mail_from"]) for c in copies], [
            ("mod@example.org",
             "bench-bounces+mod=example.org@example.org")])
        self.assertEqual(self.sink.message(copies[0]), POST)

class BatchTest(EngineTest):
    members = ["m%d@example.com" % i for i in range(5)]

    def setUp(self):
        super().setUp()
        self.make_list("bench@example.org", self.members)

    def test_recipients_per_transaction(self):
        quire(self.db, "list", "set", "bench@example.org",
              "max_recipients", "2")
        self.start_engine()
        post_plain(self.engine, "m0@example.com")
        self.wait_copies(5)
        # The batch line is written after the relay's answer is recorded,
        # which may be just after the sink has the copy.
        batches = wait_for("three batch lines", lambda: [
            l for l in self.engine.log_text().splitlines()
            if "event=delivery_batch" in l][2:] and [
            l for l in self.engine.log_text().splitlines()
            if "event=delivery_batch" in l])
        self.assertEqual(sorted(int(l.split(" rcpts=")[1].split()[0])
                                for l in batches), [1, 2, 2])

    def test_verp_one_transaction_per_recipient(self):
        quire(self.db, "list", "set", "bench@example.org",
              "verp_delivery_interval", "1")
        self.start_engine()
        post_plain(self.engine, "m0@example.com")
        copies = self.wait_copies(5)
        self.assertEqual(sorted((c["rcpt"], c["mail_from"]) for c in copies),
                         [("m%d@example.com" % i,
                           "bench-bounces+m%d=example.com@example.org" % i)
                          for i in range(5)])


    def test_expired_lease_is_claimed_before_a_backlog(self):
        """A dead runner's batch goes before queued copies, however long
        these have waited: it has waited a whole lease already."""
        lost, backlog = self.two_posts_queued()
        self.db.query(
            "UPDATE quire.delivery SET state = 'leased', leased_by = 'lost',"
            " lease_token = '00000000-0000-0000-0000-000000000001',"
            " lease_until = now() - interval '1 second'"
            " WHERE post_id = :'v1'", lost)
        self.db.query(
            "UPDATE quire.delivery SET not_before = now() - interval '1 h'"
            " WHERE post_id = :'v1'", backlog)
        # The server has been up for an hour: its grace for leases that
        # ran out while it was away is long over.
        self.set_epoch("1 hour", "59 min")
        self.assertEqual(self.db.query(
            "SELECT post_id, count(*) FROM quire.delivery_claim("
            " '00000000-0000-0000-0000-000000000002', '1 minute', 'test')"
            " GROUP BY post_id"), [[lost, "5"]])

    def two_posts_queued(self):
        """Two posts' copies queued, with no out worker to take them;
        their post ids."""
        self.start_engine(stages="lmtp,in,posting,decorate,archive")
        for n in (b"1", b"2"):
            post_plain(self.engine, "m0@example.com", n)
        wait_for("both posts' copies", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.delivery") == "10")
        return [r[0] for r in self.db.query(
            "SELECT DISTINCT post_id FROM quire.delivery ORDER BY 1")]

    def set_epoch(self, seen_ago, grace_ago):
        """As if the server had come back `seen_ago' and its grace had
        ended `grace_ago' (a negative interval: it ends in the
        future)."""
        self.db.query(
            "INSERT INTO quire.server_epoch (started, timeline,"
            " stats_reset, seen_at, grace_until)"
            " SELECT k.started, k.timeline, k.stats_reset,"
            " now() - :'v1'::interval, now() - :'v2'::interval"
            " FROM quire.server_epoch_key() k", seen_ago, grace_ago)

    def test_grace_after_a_restart_spares_only_recent_leases(self):
        """The server came back 10 s ago and its grace runs 50 s more: a
        lease that ran out 30 s before that is left to its runner, one
        that ran out an hour ago (free before the server went) is
        taken at once, and the spared one once the grace is over."""
        recent, old = self.two_posts_queued()
        for pid, ran_out in ((recent, "40 s"), (old, "1 hour")):
            self.db.query(
                "UPDATE quire.delivery SET state = 'leased',"
                " leased_by = 'lost', lease_token = gen_random_uuid(),"
                " lease_until = now() - :'v2'::interval"
                " WHERE post_id = :'v1'", pid, ran_out)
        self.set_epoch("10 s", "-50 s")
        claim = ("SELECT post_id, count(*) FROM quire.delivery_claim("
                 " gen_random_uuid(), '1 minute', 'test') GROUP BY 1")
        self.assertEqual(self.db.query(claim), [[old, "5"]])
        self.assertEqual(self.db.query(claim), [])
        due = float(self.db.scalar("SELECT quire.delivery_next_due()"))
        self.assertTrue(40 < due <= 50, due)
        self.db.query("UPDATE quire.server_epoch"
                      " SET grace_until = now() - interval '1 s'")
        self.assertEqual(self.db.query(claim), [[recent, "5"]])


class XverpTest(EngineTest):
    sink_args = ("--xverp",)

    def test_xverp_when_the_relay_offers_it(self):
        self.make_list("bench@example.org", ["a@example.com",
                                             "b@example.com"])
        quire(self.db, "list", "set", "bench@example.org",
              "verp_delivery_interval", "1")
        self.start_engine()
        for i in range(2):
            post_plain(self.engine, "a@example.com", b"%d" % i)
            self.wait_copies(2 * (i + 1))
        # The first batch learns the relay's keywords; later ones use
        # XVERP: one transaction for both recipients.
        batches = wait_for("the second post's batch line", lambda: [
            l for l in self.engine.log_text().splitlines()
            if "event=delivery_batch" in l and "sent=2" in l][1:] and [
            l for l in self.engine.log_text().splitlines()
            if "event=delivery_batch" in l])
        self.assertIn("txns=1 verp=1", batches[-1])
        copies = self.sink.index()[-2:]
        self.assertEqual(sorted(c["mail_from"] for c in copies), [
            "bench-bounces+a=example.com@example.org",
            "bench-bounces+b=example.com@example.org"])


class RelayAnswersTest(EngineTest):
    sink_args = ("--reply-rcpt", "tempfail=451", "--reply-rcpt",
                 "reject=550")
    engine_args = ("--retry-base", "1", "--retry-max", "1")

    def test_temporary_and_permanent_failures(self):
        self.make_list("bench@example.org", [
            "ok@example.com", "tempfail@example.com", "reject@example.com"])
        self.start_engine()
        post_plain(self.engine, "ok@example.com")
        copies = self.wait_copies(1)
        self.assertEqual([c["rcpt"] for c in copies], ["ok@example.com"])
        bounce = wait_for("the bounce event", lambda: self.db.query(
            "SELECT email, code FROM quire.bounce_event"))
        self.assertEqual(bounce, [["reject@example.com", "550"]])
        # Retried with backoff, each answer recorded.
        wait_for("two deferrals", lambda: int(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log WHERE outcome = "
            "'deferred' AND email = 'tempfail@example.com'")) >= 2)
        row = self.db.query(
            "SELECT state, last_code FROM quire.delivery "
            "WHERE email = 'tempfail@example.com'")
        self.assertIn(row[0][1], ["451"])
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log WHERE outcome = "
            "'sent'"), "1")


class RelayClosesTest(EngineTest):
    """A relay that answers one recipient's copy with 421 and closes the
    connection fails the copies after it in the batch too; on the retry
    those go without it and get through, and only the one is retried.
    Here with VERP (a transaction a recipient, 421 to the final dot)."""
    sink_args = ("--reply-data", "m1=421")
    engine_args = ("--retry-base", "1", "--retry-max", "1",
                   "--out-connections", "1")
    members = ["m%d@example.com" % i for i in range(5)]
    verp = "1"

    def test_one_recipient_does_not_hold_up_the_rest(self):
        self.make_list("bench@example.org", self.members)
        quire(self.db, "list", "set", "bench@example.org",
              "verp_delivery_interval", self.verp)
        self.start_engine()
        post_plain(self.engine, "m0@example.com")
        copies = wait_for("every copy but m1's", lambda: len(
            self.sink.index()) == 4 and self.sink.index())
        self.assertEqual(sorted(c["rcpt"] for c in copies),
                         [m for m in self.members if m != "m1@example.com"])
        wait_for("m1 deferred again", lambda: int(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log WHERE outcome ="
            " 'deferred' AND email = 'm1@example.com' AND code = 421"))
            >= 2)
        self.assertEqual(self.db.query(
            "SELECT email, last_code FROM quire.delivery"),
            [["m1@example.com", "421"]])


class RelayClosesOnRcptTest(RelayClosesTest):
    """The same with one transaction for all, 421 to one RCPT."""
    sink_args = ("--reply-rcpt", "m1=421")
    verp = "0"


class GreylistTest(EngineTest):
    """Copies deferred with a 4xx that keeps the connection open are
    retried together, not one transaction each."""
    sink_args = ("--reply-rcpt", "grey=451")
    engine_args = ("--retry-base", "1", "--retry-max", "1")

    def test_deferred_copies_are_retried_as_one_batch(self):
        self.make_list("bench@example.org", [
            "ok@example.com", "grey1@example.com", "grey2@example.com"])
        self.start_engine()
        post_plain(self.engine, "ok@example.com")
        wait_for("two retries", lambda: int(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log"
            " WHERE outcome = 'deferred'")) >= 6)
        batches = [l for l in self.engine.log_text().splitlines()
                   if " event=delivery_batch " in l]
        self.assertEqual([re.search(r" rcpts=(\d+) .* sent=(\d+) "
                                    r"deferred=(\d+) ", l).groups()
                          for l in batches[:3]],
                         [("3", "1", "2"), ("2", "0", "2"),
                          ("2", "0", "2")])


class RelayDownTest(EngineTest):
    engine_args = ("--retry-base", "1", "--retry-max", "1")

    def test_nothing_lost_while_the_relay_is_down(self):
        self.make_list("bench@example.org", MEMBERS)
        self.sink.stop()
        port = self.sink.port
        self.start_engine()
        c = LMTP(self.engine.lmtp_port)
        codes, _ = c.send("anne@example.com", ["bench@example.org"], POST)
        c.close()
        self.assertEqual(codes, [250])
        wait_for("a deferral", lambda: int(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log WHERE outcome = "
            "'deferred'")) >= 3)
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.delivery"), "3")
        self.sink = Sink(port=port)
        copies = self.wait_copies(3)
        self.assertEqual(sorted(c["rcpt"] for c in copies), sorted(MEMBERS))


class DatabaseDownTest(EngineTest):

    def test_lmtp_answers_451_without_a_database(self):
        from harness import Engine, free_port

        class Nowhere:
            conninfo = ("host=127.0.0.1 port=%d dbname=none "
                        "connect_timeout=1" % free_port())
        self.engine = Engine(Nowhere, self.sink.port)
        c = LMTP(self.engine.lmtp_port)
        codes, replies = c.send("anne@example.com", ["bench@example.org"],
                                POST)
        c.close()
        self.assertEqual(codes, [451])
        self.assertIn("event=lmtp_rcpt_deferred", self.engine.log_text())


    def test_lmtp_answers_451_when_the_server_never_answers(self):
        """A server that takes the connection and says nothing (a frozen
        postmaster, a proxy that lost its backend): the RCPT gets its
        451 once connect_timeout has passed, not never."""
        from harness import Engine
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        self.addCleanup(silent.close)

        class Silent:
            conninfo = ("host=127.0.0.1 port=%d dbname=none "
                        "connect_timeout=2" % silent.getsockname()[1])
        self.engine = Engine(Silent, self.sink.port, stages="lmtp")
        c = LMTP(self.engine.lmtp_port, timeout=60)
        codes, _ = c.send("anne@example.com", ["bench@example.org"], POST)
        c.close()
        self.assertEqual(codes, [451])
        self.assertRegex(self.engine.log_text(), r" event=db_disconnected "
                         r".*reason=\"no answer from the server within "
                         r"connect_timeout\"")


class MultiHostTest(EngineTest):

    def test_multi_host_conninfo_finds_the_primary(self):
        """host=a,b target_session_attrs=read-write: the first host is
        down, the second is the database."""
        import re as _re
        from harness import Engine, free_port
        self.make_list("bench@example.org", MEMBERS)
        host = _re.search(r"host=(\S+)", self.db.conninfo).group(1)
        port = _re.search(r"port=(\S+)", self.db.conninfo).group(1)

        class TwoHosts:
            conninfo = ("host=127.0.0.1,%s port=%d,%s dbname=%s user=quire "
                        "target_session_attrs=read-write connect_timeout=2"
                        % (host, free_port(), port, self.db.name))
        self.engine = Engine(TwoHosts, self.sink.port)
        c = LMTP(self.engine.lmtp_port)
        codes, _ = c.send("anne@example.com", ["bench@example.org"], POST)
        c.close()
        self.assertEqual(codes, [250])
        self.assertEqual(sorted(x["rcpt"] for x in self.wait_copies(3)),
                         sorted(MEMBERS))


class SizeTest(EngineTest):

    def test_size_limits(self):
        self.make_list("bench@example.org", MEMBERS)
        quire(self.db, "list", "set", "bench@example.org",
              "accept_size_limit", "2")
        quire(self.db, "list", "set", "bench@example.org",
              "max_message_size", "1")
        self.start_engine()
        big = crlf(b"From: anne@example.com\nSubject: big\n\n" +
                   b"x" * 70 + b"\n") * 40
        middle = crlf(b"From: anne@example.com\nSubject: mid\n\n" +
                      (b"y" * 70 + b"\n") * 20)
        c = LMTP(self.engine.lmtp_port)
        _, replies = c.send("anne@example.com", ["bench@example.org"], big)
        self.assertEqual(replies, ["552 5.3.4 Message is larger than this "
                                   "list accepts"])
        _, replies = c.send("anne@example.com", ["bench@example.org"],
                            middle)
        c.close()
        self.assertTrue(replies[0].startswith("250 "))
        row = wait_for("the held post", lambda: self.db.query(
            "SELECT reason FROM quire.held"))
        self.assertEqual(row, [["message size 2 KB is over the list's "
                                "max_message_size of 1 KB"]])


if __name__ == "__main__":
    unittest.main()
