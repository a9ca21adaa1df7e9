"""Nothing accepted is lost when the database goes away in the middle of
a stream: a restart of PostgreSQL (-m immediate), and a failover from a
primary to its synchronous standby.  And a commit the synchronous standby
did not confirm is never acknowledged.

A driver plays the MTA: several connections stream messages with unique
Message-IDs to one list over LMTP, and a message refused with 4xx, or
whose reply never came, is sent again with the same bytes until it gets
a 250.  Then every message that got a 250 must be in the database and
at every member exactly once.  The one exception Quire admits is a
batch whose relay answer it could not record (event=delivery_unrecorded
in the engine log): its lease runs out and the batch is sent again, so
its members may have that post twice.  A worker that only lost the
database records its batches once it is back (delivery_record_pending,
then a delivery_batch line with late=1), so none of these is expected
here, but none is ruled out either: what is ruled out is a second copy
without such a line.

Each test owns its PostgreSQL server (pgcluster.PgCluster) and prints
its figures; nothing here asserts on timing.
"""
import calendar
import collections
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from harness import (Engine, LMTP, LMTPError, Sink, crlf, headers_of,
                     quire, split_message, wait_for)
import pgcluster
from pgcluster import PgCluster

LIST = "stream@example.org"
MEMBERS = ["anne@example.com", "bob@example.net", "carol@example.org",
           "dave@example.com", "erin@example.net"]
# Short enough that a batch whose record was lost is sent again within
# the test, long enough that no batch in flight outlives its lease while
# the database is away (that would be a second copy with no lost
# record behind it, which the test counts as a failure).
LEASE = 12
# What engine/db.c waits at most between two connection attempts.
RETRY_CAP = "1 s"
# How long the primary is gone before the standby is promoted: what a
# failover manager takes to decide, and long enough for the engine's
# reconnect backoff to reach its cap.
DECIDE = 2.0
# Messages accepted before the outage, and after the database is back,
# so that the stream runs through it.
BEFORE, AFTER = 60, 60


def stream_message(i):
    return crlf(b"From: Anne Person <anne@example.com>\n"
                b"To: " + LIST.encode() + b"\n"
                b"Subject: stream %d\n"
                b"Message-ID: <stream-%d@failover.example>\n"
                b"\n"
                b"Message %d of the stream.\n" % (i, i, i))


def message_id(i):
    return "<stream-%d@failover.example>" % i


class Mta:
    """Sends messages to LMTP as an MTA does: each message, the same
    bytes every time, until the server answers 250.  A 4xx, a
    connection that breaks or a reply that never comes means: wait a
    moment and send it again."""

    def __init__(self, port, connections=3, pause=0.005, retry_pause=0.1,
                 reply_timeout=20):
        self.port = port
        self.pause = pause
        self.retry_pause = retry_pause
        self.reply_timeout = reply_timeout
        self.lock = threading.Lock()
        self.next = 0
        self.stopping = threading.Event()
        self.accepted = {}          # message number -> the 250 reply
        self.accepted_at = []       # monotonic time of each first 250
        self.deferred = collections.Counter()  # 4xx replies by code
        self.no_reply = 0           # broke or timed out before a reply
        self.retries = 0            # sends after the first of a message
        self.already = 0            # 250 Already queued
        self.errors = []            # anything an MTA would bounce
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(connections)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        """Send no new message; finish those begun."""
        self.stopping.set()
        for t in self.threads:
            t.join(120)
            if t.is_alive():
                raise AssertionError("the MTA driver did not finish")

    def count(self):
        with self.lock:
            return len(self.accepted)

    def longest_gap(self):
        """The longest time between two 250s: the outage as the MTA
        saw it."""
        with self.lock:
            at = sorted(self.accepted_at)
        return max(b - a for a, b in zip(at, at[1:]))

    def _take(self):
        with self.lock:
            if self.stopping.is_set():
                return None
            i = self.next
            self.next += 1
            return i

    def _run(self):
        conn = None
        while True:
            i = self._take()
            if i is None:
                break
            data = stream_message(i)
            sends = 0
            while True:
                if sends > 0:
                    time.sleep(self.retry_pause)
                sends += 1
                if conn is None:
                    try:
                        conn = LMTP(self.port, timeout=self.reply_timeout)
                    except (OSError, LMTPError) as e:
                        with self.lock:
                            self.errors.append("connect: %s" % e)
                        return
                with self.lock:
                    if sends > 1:
                        self.retries += 1
                try:
                    codes, replies = conn.send("anne@example.com", [LIST],
                                               data)
                except (OSError, LMTPError, socket.timeout):
                    with self.lock:
                        self.no_reply += 1
                    conn.sock.close()
                    conn = None
                    continue
                code = int(replies[0][:3]) if replies else codes[0]
                with self.lock:
                    if code == 250:
                        self.accepted[i] = replies[0]
                        self.accepted_at.append(time.monotonic())
                        if "Already queued" in replies[0]:
                            self.already += 1
                    elif 400 <= code < 500:
                        self.deferred[code] += 1
                    else:
                        self.errors.append("message %d: %s %s" % (
                            i, codes, replies))
                        return
                if code == 250:
                    break
            time.sleep(self.pause)
        if conn is not None:
            conn.close()


def log_events(text):
    """(event, proc, fields) of each line of an engine log."""
    out = []
    for line in text.splitlines():
        m = re.search(r" event=(\S+) proc=(\S+) ", line)
        if m:
            out.append((m.group(1), m.group(2), line))
    return out


def out_waits(db, what):
    """An out worker's session waits for `what' (a wait event or its
    type: SyncRep, Lock)."""
    return db.scalar(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name LIKE '%/out'"
        "   AND :'v1' IN (wait_event, wait_event_type)", what) == "1"


def copies_on(standby, state):
    """Copies in `state' on a standby; 0 until it has replayed the
    schema (flushed there is not yet replayed)."""
    try:
        return int(standby.psql("SELECT count(*) FROM quire.delivery"
                                " WHERE state = '%s'" % state,
                                dbname="quire"))
    except AssertionError:
        return 0


class StreamTest(unittest.TestCase):
    """What the tests share: a list on a database the test owns, the
    sink, the engine and the MTA."""

    def setUp(self):
        if not pgcluster.BINDIR:
            self.skipTest("no PostgreSQL server installed")
        self.engine = None
        self.sink = Sink()
        self.addCleanup(self.sink.stop)

    def tearDown(self):
        log = ""
        if self.engine is not None:
            self.engine.stop()
            log = self.engine.log_text()
            if self._failed() or os.environ.get("QUIRE_TEST_LOG"):
                print("---- engine log ----\n" + log)
        for bad in ("Sanitizer", "runtime error:", "event=worker_exited"):
            if bad in log:
                self.fail("engine log has %r:\n%s" % (bad, "\n".join(
                    l for l in log.splitlines() if bad in l)[:4000]))

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return result is not None and any(
            t is self for t, _ in result.failures + result.errors)

    def cluster(self, **kw):
        pg = PgCluster(**kw)
        self.addCleanup(pg.destroy)
        return pg

    def synchronous_pair(self):
        """A primary and its streaming standby, both started: a commit
        is on both servers before its client hears of it."""
        primary = self.cluster(conf=[
            "synchronous_standby_names = 'standby'"])
        primary.start()
        standby = primary.standby()
        self.addCleanup(standby.destroy)
        standby.start()
        primary.wait_streaming("standby", sync=True)
        return primary, standby

    def failover_pair(self):
        """A synchronous pair, and a database on it that the engines
        reach by the multi-host conninfo, which finds the primary."""
        primary, standby = self.synchronous_pair()
        both = ("host=127.0.0.1,127.0.0.1 port=%d,%d user=%s dbname=quire"
                " target_session_attrs=read-write connect_timeout=2" % (
                    primary.port, standby.port, pgcluster.OWNER))
        return primary, standby, primary.database("quire", conninfo=both)

    def out_pid(self):
        """The engine's out worker."""
        return int(re.search(r" event=worker_started .*worker=out "
                             r"worker_pid=(\d+)",
                             self.engine.log_text()).group(1))

    def make_list(self, db):
        quire(db, "migrate")
        quire(db, "domain", "add", LIST.split("@")[1])
        quire(db, "list", "create", LIST)
        quire(db, "member", "add", LIST, *MEMBERS)

    def start_engine(self, db):
        self.engine = Engine(db, self.sink.port, "--lease", str(LEASE),
                             "--commit-timeout", "3")
        self.mta = Mta(self.engine.lmtp_port)

    def stream_around(self, outage):
        """Stream BEFORE messages, run outage() (which returns when the
        database is meant to be back), stream AFTER more; returns what
        outage() returned and the time it began."""
        self.mta.start()
        wait_for("%d messages accepted" % BEFORE,
                 lambda: self.mta.count() >= BEFORE or self.mta.errors,
                 timeout=60)
        self.log_mark = len(self.engine.log_text())
        began = time.monotonic()
        result = outage()
        back = self.mta.count()
        wait_for("%d messages accepted after the outage" % AFTER,
                 lambda: self.mta.count() >= back + AFTER or
                 self.mta.errors, timeout=90)
        self.mta.stop()
        self.assertEqual(self.mta.errors, [])
        return result, began

    def database_of_its_own(self):
        """A server started for this test alone, with the list on it;
        (cluster, database)."""
        pg = self.cluster()
        pg.start()
        db = pg.database()
        self.make_list(db)
        return pg, db

    def post_one(self):
        """The first stream message through the engine's LMTP: 250."""
        c = LMTP(self.engine.lmtp_port)
        _, replies = c.send("anne@example.com", [LIST], stream_message(1))
        c.close()
        self.assertRegex(replies[0], r"^250 ")

    def post_with_its_answer_held(self, db, hold, *engine_args):
        """An engine on db with engine_args, and one post whose copies
        the relay stores but answers only `hold` seconds after their
        final dot; returns the relay once the copies are stored."""
        held = Sink("--delay-data", str(hold), "--delay-count", "1")
        self.addCleanup(held.stop)
        self.engine = Engine(db, held.port, *engine_args)
        self.post_one()
        wait_for("the copies stored, their 250 held back", lambda:
                 len(held.index()) == len(MEMBERS))
        return held

    def wait_all_sent(self, db, relay):
        """Until the one post's copies are recorded sent, leaving none
        queued; each member's copy at the relay once."""
        wait_for("every copy recorded", lambda: db.scalar(
            "SELECT count(*) FROM quire.delivery_log"
            " WHERE outcome = 'sent'") == str(len(MEMBERS)), timeout=60)
        self.assertEqual(db.scalar("SELECT count(*) FROM quire.delivery"),
                         "0")
        self.assertEqual(sorted(e["rcpt"] for e in relay.index()),
                         sorted(MEMBERS))

    def claim_waiting_for_the_standby(self, db, standby):
        """One post whose copies reach the standby while the out worker
        is frozen; the standby then stops, and the worker's claim of
        them, committed on the primary alone, waits for it."""
        out_pid = self.out_pid()
        os.kill(out_pid, signal.SIGSTOP)
        try:
            self.post_one()
            wait_for("the copies queued on the standby", lambda:
                     copies_on(standby, "queued") == len(MEMBERS))
            standby.stop("immediate")
        finally:
            os.kill(out_pid, signal.SIGCONT)
        wait_for("the claim's commit waiting for the standby", lambda:
                 out_waits(db, "SyncRep"))

    def copies_by_message(self):
        """(Message-ID, member) -> copies at the sink."""
        copies = collections.Counter()
        for entry in self.sink.index():
            head, _ = split_message(self.sink.message(entry))
            ids = [v for n, v in headers_of(head)
                   if n.lower() == "message-id"]
            self.assertEqual(len(ids), 1, entry)
            copies[(ids[0], entry["rcpt"])] += 1
        return copies

    def check_all_delivered(self, db):
        """Every message that got a 250 is in the database once and at
        every member once, or twice for a batch logged unrecorded.
        Returns the figures."""
        mta = self.mta
        sent = sorted(mta.accepted)
        # The MTA gives up on nothing, so every message it began has its
        # 250; and every 250 named the post the database has for it.
        self.assertEqual(sent, list(range(mta.next)))
        wait_for("the queue and the delivery table empty", lambda:
                 db.scalar("SELECT (SELECT count(*) FROM quire.queue) + "
                           "(SELECT count(*) FROM quire.delivery)") == "0",
                 timeout=LEASE * 3 + 60)
        posts = dict((mid, (pid, status)) for mid, pid, status in db.query(
            "SELECT message_id_header, id, status FROM quire.post"))
        self.assertEqual(len(posts), int(db.scalar(
            "SELECT count(*) FROM quire.post")), "a message posted twice")
        for i in sent:
            self.assertIn(message_id(i), posts)
            pid, status = posts[message_id(i)]
            self.assertEqual(status, "accepted", message_id(i))
            self.assertRegex(mta.accepted[i],
                             r"^250 2\.0\.0 (Queued|Already queued) as "
                             r"post %s$" % pid)
        self.assertEqual(len(posts), len(sent))
        self.assertEqual(db.scalar("SELECT count(*) FROM quire.shunted"),
                         "0")
        # The record of every copy, once.
        self.assertEqual(db.query(
            "SELECT outcome, count(*), count(DISTINCT (post_id, email)) "
            "FROM quire.delivery_log GROUP BY outcome"),
            [["sent", str(len(sent) * len(MEMBERS)),
              str(len(sent) * len(MEMBERS))]])

        log = self.engine.log_text()
        unrecorded = {}
        for line in log.splitlines():
            if "event=delivery_unrecorded " in line:
                f = dict(re.findall(r"(\w+)=(\S+)", line))
                unrecorded[f["post"]] = int(f["rcpts"])
        self.assertNotIn("event=delivery_lease_lost", log)
        # A worker that only lost the database records its batches when
        # it is back: none is left to its lease.
        self.assertEqual(unrecorded, {})
        late = len(re.findall(r" event=delivery_batch .* late=1 ", log))
        by_post = dict((mid, pid) for mid, (pid, _) in posts.items())
        copies = self.copies_by_message()
        self.assertEqual(set(copies), {(message_id(i), r) for i in sent
                                       for r in MEMBERS})
        twice = {}
        for i in sent:
            counts = [copies[(message_id(i), r)] for r in MEMBERS]
            pid = by_post[message_id(i)]
            if pid in unrecorded:
                # One batch carries all of a post's members, so the
                # batch was sent again to all or to none.
                self.assertEqual(unrecorded[pid], len(MEMBERS))
                self.assertIn(counts, ([1] * len(MEMBERS),
                                       [2] * len(MEMBERS)), message_id(i))
                if counts[0] == 2:
                    twice[pid] = message_id(i)
            else:
                self.assertEqual(counts, [1] * len(MEMBERS), message_id(i))
        return {
            "messages": len(sent),
            "451s": mta.deferred[451],
            "other_4xx": sum(mta.deferred.values()) - mta.deferred[451],
            "no_reply": mta.no_reply,
            "retries": mta.retries,
            "already_queued": mta.already,
            "copies": sum(copies.values()),
            "duplicates": sum(copies.values()) - len(sent) * len(MEMBERS),
            "unrecorded_batches": len(unrecorded),
            "recorded_late": late,
            "sent_twice": sorted(twice.values()),
        }

    def check_reconnected(self):
        """Each worker saw the database go, came back (LISTEN again:
        runner_ready) and scanned its stages once after that.  Returns
        the failed connection attempts of each worker."""
        events = log_events(self.engine.log_text()[self.log_mark:])
        for proc in ("pipeline", "out"):
            mine = [ev for ev, p, _ in events if p == proc]
            self.assertIn("runner_db_lost", mine, proc)
            lost = mine.index("runner_db_lost")
            self.assertIn("runner_ready", mine[lost:], proc)
            ready = lost + mine[lost:].index("runner_ready")
            self.assertIn("runner_scanned", mine[ready:], proc)
        lmtp = [ev for ev, p, _ in events if p == "lmtp"]
        self.assertIn("db_disconnected", lmtp)
        self.assertIn("db_connected",
                      lmtp[lmtp.index("db_disconnected"):])
        failed = collections.Counter(
            p for ev, p, _ in events
            if ev in ("db_connect_failed", "db_disconnected"))
        return dict(failed)


class RestartTest(StreamTest):

    def test_restart_in_the_middle_of_a_stream(self):
        pg = self.cluster()
        pg.start()
        db = pg.database()
        self.make_list(db)
        self.start_engine(db)

        def restart():
            t0 = time.monotonic()
            pg.restart("immediate")
            return time.monotonic() - t0

        took, _ = self.stream_around(restart)
        figures = self.check_all_delivered(db)
        self.assertGreater(self.mta.deferred[451], 0, "no 451 while away")
        attempts = self.check_reconnected()
        figures.update({
            "restart_ms": round(took * 1000),
            "outage_ms": round(self.mta.longest_gap() * 1000),
            "failed_connects": attempts,
        })
        print("\nrestart: " + " ".join(
            "%s=%s" % kv for kv in figures.items()))


class LongOutageTest(StreamTest):
    """The database gone longer than --lease while a batch is in flight:
    the relay's answer, read once the worker is back, is recorded under
    the batch's own lease, which the worker renewed on reconnecting, and
    no copy is sent twice."""

    LEASE = 2
    HOLD = 8        # the relay's delay before its 250 to the final dot

    def test_outage_longer_than_the_lease_sends_nothing_twice(self):
        pg, db = self.database_of_its_own()
        held = self.post_with_its_answer_held(db, self.HOLD, "--lease",
                                              str(self.LEASE))
        pg.stop("immediate")
        down = time.monotonic()
        # Longer than the lease, shorter than the relay's hold.
        time.sleep(self.LEASE * 2)
        pg.start()
        away = time.monotonic() - down
        self.wait_all_sent(db, held)
        events = [ev for ev, proc, _ in
                  log_events(self.engine.log_text()) if proc == "out"]
        self.assertIn("runner_db_lost", events)
        self.assertNotIn("delivery_lease_lost", events)
        self.assertNotIn("delivery_unrecorded", events)
        self.assertEqual(events.count("delivery_leased"), 1)
        print("\n  long outage: database away %.1f s with a batch in "
              "flight, --lease %d s: %d copies, each once" % (
                  away, self.LEASE, len(held.index())))


class OtherHostBackFirstTest(StreamTest):
    """The same outage with a second engine delivering from the same
    database.  Its out worker is back first (the first engine's is
    frozen until then): the lease of the first one's batch has run out,
    but only while nobody could renew it, so the second engine leaves it
    alone for one lease after the restart, and the first one, back
    within that, renews and records it.  No copy goes twice."""

    LEASE = 8
    HOLD = 3        # the relay's delay before its 250 to the final dot

    def test_the_first_back_leaves_the_others_batch(self):
        self.check_back_first(lambda pg: pg.stop("immediate"),
                              lambda pg: pg.start())

    def test_the_same_after_a_crash_restart(self):
        """A server process dies; the postmaster, held still until the
        lease has run out, then ends the others and recovers, keeping
        its start time and its timeline."""
        held = {}

        def crash(pg):
            with open(os.path.join(pg.data, "postmaster.pid")) as f:
                held["postmaster"] = int(f.readline())
            backends = pg.psql(
                "SELECT pid FROM pg_stat_activity WHERE backend_type ="
                " 'client backend' AND pid <> pg_backend_pid()").split()
            os.kill(held["postmaster"], signal.SIGSTOP)
            for pid in backends:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

        self.check_back_first(crash, lambda pg: os.kill(
            held["postmaster"], signal.SIGCONT))

    def check_back_first(self, go_away, come_back):
        pg, db = self.database_of_its_own()
        held = self.post_with_its_answer_held(db, self.HOLD, "--lease",
                                              str(self.LEASE))
        other = Engine(db, held.port, "--lease", str(self.LEASE),
                       stages="out")
        self.addCleanup(other.stop)
        wait_for("the other engine's scan", lambda:
                 " event=runner_scanned " in other.log_text())
        out_pid = self.out_pid()
        go_away(pg)
        time.sleep(self.LEASE + 1)
        os.kill(out_pid, signal.SIGSTOP)
        try:
            mark = len(other.log_text())
            come_back(pg)
            wait_for("the other engine back and its scan done", lambda:
                     " event=runner_scanned " in other.log_text()[mark:],
                     timeout=60)
            # Time for it to claim, were it to.
            time.sleep(1)
        finally:
            os.kill(out_pid, signal.SIGCONT)
        self.wait_all_sent(db, held)
        self.assertNotIn(" event=delivery_leased ", other.log_text())
        lines = [l for ev, proc, l in log_events(self.engine.log_text())
                 if proc == "out" and ev == "delivery_batch"]
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r" sent=%d .* stale=0 " %
                         len(MEMBERS))


class RecordOutcomeTest(StreamTest):
    """The database goes away while the out worker's record of a batch
    is on its way, so the worker cannot know whether it committed.  Once
    back, it finds the record if it landed, or records the relay's
    answers then under the batch's own lease: no copy is sent again."""

    HOLD = 3        # the relay's delay before its 250 to the final dot

    def setUp(self):
        super().setUp()
        self.pg, self.db = self.database_of_its_own()

    def post_and_wait_for_the_copies(self, *engine_args):
        self.held = self.post_with_its_answer_held(self.db, self.HOLD,
                                                   *engine_args)

    def check_once(self, late_sent):
        # A record that landed is in the database before the worker
        # is back to find it.
        wait_for("the worker's line for the batch", lambda:
                 " event=delivery_batch " in self.engine.log_text(),
                 timeout=60)
        self.wait_all_sent(self.db, self.held)
        lines = [l for ev, proc, l in log_events(self.engine.log_text())
                 if proc == "out"]
        events = [re.search(r" event=(\S+)", l).group(1) for l in lines]
        self.assertEqual(events.count("delivery_leased"), 1)
        self.assertEqual(events.count("delivery_record_pending"), 1)
        self.assertNotIn("delivery_unrecorded", events)
        self.assertNotIn("delivery_lease_lost", events)
        batch = [dict(re.findall(r"(\w+)=(\S+)", l)) for l in lines
                 if " event=delivery_batch " in l]
        self.assertEqual([(b["late"], b["sent"], b["stale"])
                          for b in batch], [("1", late_sent, "0")])
        self.assertEqual(self.db.scalar(
            "SELECT count(DISTINCT lease_token) FROM quire.delivery_log"),
            "1")

    def test_record_that_landed_is_found(self):
        """Its commit waits for a synchronous standby that never comes,
        so it is written but never confirmed, when the server stops."""
        self.post_and_wait_for_the_copies()
        self.pg.psql("ALTER SYSTEM SET synchronous_standby_names = "
                     "'nobody'")
        self.pg.psql("SELECT pg_reload_conf()")
        wait_for("the record waiting for the standby",
                 lambda: out_waits(self.db, "SyncRep"))
        self.pg.psql("ALTER SYSTEM RESET synchronous_standby_names")
        self.pg.restart("immediate")
        self.check_once(str(len(MEMBERS)))

    def test_record_that_was_lost_is_made_again(self):
        """Its INSERT waits on a lock when the server stops, so nothing of
        it committed; the lease (3 s) has run out by the time the worker
        is back, and is still its own."""
        self.post_and_wait_for_the_copies("--lease", "3")
        lock = subprocess.Popen(
            ["psql", "-X", "-Atq", "-d", self.db.conninfo],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(lock.wait)
        self.addCleanup(lock.stdout.close)
        lock.stdin.write(b"BEGIN; LOCK TABLE quire.delivery_log IN SHARE "
                         b"MODE; SELECT 'locked';\n")
        lock.stdin.flush()
        self.assertEqual(lock.stdout.readline(), b"locked\n")
        wait_for("the record waiting on the lock",
                 lambda: out_waits(self.db, "Lock"))
        time.sleep(3)
        self.pg.restart("immediate")
        lock.stdin.close()
        self.check_once(str(len(MEMBERS)))

    def test_stop_while_the_database_is_away(self):
        """SIGTERM with a batch in flight while the server restarts: the
        out worker waits (up to --smtp-timeout) for the database, records
        the batch and only then exits, leaving nothing to be re-sent."""
        self.post_and_wait_for_the_copies("--lease", "2")
        self.pg.stop("immediate")
        time.sleep(0.5)
        self.engine.proc.send_signal(signal.SIGTERM)
        time.sleep(1)
        self.pg.start()
        self.assertEqual(self.engine.proc.wait(60), 0)
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.delivery"), "0")
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log WHERE outcome ="
            " 'sent'"), str(len(MEMBERS)))
        self.assertEqual(sorted(e["rcpt"] for e in self.held.index()),
                         sorted(MEMBERS))
        # Whether the stop came while it waited for the server
        # (out_stop_waits_for_db) or before it saw the server go, no
        # batch may be given up.
        self.assertNotIn("event=delivery_unrecorded",
                         self.engine.log_text())

    def test_session_lost_unseen_while_the_answer_comes(self):
        """The out worker is frozen while the server ends its session
        and the relay answers; thawed (before its lease is due for
        renewal), it reads the answer before it notices the session gone
        (with one SMTP connection, as it happens here), and must keep
        that answer until it is back on the database."""
        self.post_and_wait_for_the_copies("--lease", "20",
                                          "--out-connections", "1")
        out_pid = self.out_pid()
        os.kill(out_pid, signal.SIGSTOP)
        try:
            self.assertEqual(self.db.scalar(
                "SELECT count(pg_terminate_backend(pid))"
                "  FROM pg_stat_activity WHERE application_name LIKE"
                " '%/' || :'v1' || '/out'", out_pid), "1")
            time.sleep(self.HOLD + 1)
        finally:
            os.kill(out_pid, signal.SIGCONT)
        wait_for("the worker's line for the batch", lambda:
                 " event=delivery_batch " in self.engine.log_text(),
                 timeout=60)
        self.wait_all_sent(self.db, self.held)
        log = self.engine.log_text()
        self.assertEqual(log.count(" event=delivery_leased "), 1)
        self.assertNotIn("event=delivery_unrecorded", log)
        self.assertNotIn("event=delivery_lease_lost", log)
        self.assertRegex(log, r" event=delivery_batch .* sent=%d " %
                         len(MEMBERS))


class FailoverTest(StreamTest):

    def test_failover_to_a_synchronous_standby(self):
        primary, standby, db = self.failover_pair()
        self.make_list(db)
        self.start_engine(db)

        def failover():
            primary.stop("immediate")
            stopped = time.time()
            time.sleep(DECIDE)
            standby.promote()
            return stopped, time.time()

        (stopped, promoted), _ = self.stream_around(failover)
        self.assertFalse(standby.is_in_recovery())
        figures = self.check_all_delivered(db)
        self.assertGreater(self.mta.deferred[451], 0, "no 451 while away")
        attempts = self.check_reconnected()
        first = min(m for m in self.copy_times() if m > promoted)
        figures.update({
            "stop_to_promoted_ms": round((promoted - stopped) * 1000),
            "outage_ms": round(self.mta.longest_gap() * 1000),
            "promote_to_first_delivery_ms": round(
                (first - promoted) * 1000),
            "failed_connects": attempts,
        })
        print("\nfailover: " + " ".join(
            "%s=%s" % kv for kv in figures.items()))
        print("failover: promote_to_first_delivery is the out worker's "
              "wait for its next connection attempt (engine/db.c "
              "db_connect_retry: 100 ms after the first failure, doubling "
              "to a cap of %s, so at most the cap once the primary has "
              "been gone a second), then one claim and one SMTP "
              "transaction; out worker's attempts, ms after the stop "
              "(x failed, ok connected; promoted at %d): %s" % (
                  RETRY_CAP, round((promoted - stopped) * 1000),
                  self.attempt_times("out", stopped)))

    def test_unconfirmed_claim_is_never_sent(self):
        """The out worker's claim and its fetch of the post share one
        round trip and commit at its end, after their rows have come
        back.  The primary stops while that commit waits for a standby
        that never got it, and the standby is promoted: the claim never
        was, so its batch must not go out (it would go twice)."""
        primary, standby, db = self.failover_pair()
        self.make_list(db)
        self.start_engine(db)
        self.claim_waiting_for_the_standby(db, standby)
        primary.stop("immediate")
        standby.start()
        standby.promote()
        self.wait_all_sent(db, self.sink)
        self.assertEqual(self.copies_by_message(), collections.Counter({
            (message_id(1), r): 1 for r in MEMBERS}))
        log = self.engine.log_text()
        self.assertRegex(log, r" event=out_claim_failed ")
        self.assertNotIn("event=delivery_lease_lost", log)
        self.assertEqual(log.count(" event=delivery_batch "), 1)

    def test_record_on_the_primary_alone_is_not_trusted(self):
        """The out worker's record waits for a standby that has stopped
        when the primary restarts: the record stands on the primary
        only.  Back on it, the worker must not take the record for done
        until the standby has it too; the primary is then lost and the
        standby promoted, where the worker records the batch again under
        its own lease, and no copy goes twice."""
        primary, standby, db = self.failover_pair()
        self.make_list(db)
        # A lease long enough that no renewal comes before the record.
        held = self.post_with_its_answer_held(db, 3, "--lease", "30")
        wait_for("the standby has the claim", lambda:
                 copies_on(standby, "leased") == len(MEMBERS))
        standby.stop("immediate")
        wait_for("the record waiting for the standby",
                 lambda: out_waits(db, "SyncRep"))
        primary.restart("immediate")
        wait_for("the worker back, and waiting for the standby again",
                 lambda: out_waits(db, "SyncRep") or
                 " event=delivery_batch " in self.engine.log_text())
        primary.stop("immediate")
        standby.start()
        standby.promote()
        self.wait_all_sent(db, held)
        log = self.engine.log_text()
        self.assertEqual(log.count(" event=delivery_leased "), 1)
        self.assertNotIn("event=delivery_lease_lost", log)
        self.assertNotIn("event=delivery_unrecorded", log)
        batch = re.findall(r" event=delivery_batch .* sent=(\d+) .*"
                           r" stale=(\d+) late=(\d+) ", log)
        self.assertEqual(batch, [(str(len(MEMBERS)), "0", "1")])

    def test_stop_while_the_standby_is_away(self):
        """SIGTERM while the out worker's claim waits for a standby that
        has stopped: the wait is cancelled after --smtp-timeout, nothing
        unconfirmed is sent, the engine exits 0, and once the standby is
        back the copies go out once."""
        primary, standby = self.synchronous_pair()
        db = primary.database("quire")
        self.make_list(db)
        self.engine = Engine(db, self.sink.port, "--lease", "2",
                             "--smtp-timeout", "2")
        self.claim_waiting_for_the_standby(db, standby)
        self.engine.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.engine.proc.wait(60), 0)
        log = self.engine.log_text()
        self.assertRegex(log, r" event=out_claim_failed .*reason=\"commit "
                         r"not confirmed by the synchronous standby\"")
        self.assertEqual(self.sink.index(), [])
        self.engine.stop()
        standby.start()
        primary.wait_streaming("standby", sync=True)
        self.engine = Engine(db, self.sink.port, "--lease", "2")
        self.wait_all_sent(db, self.sink)

    def test_unconfirmed_commit_is_never_250(self):
        """With the synchronous standby away a COMMIT waits; the engine
        cancels the wait after --commit-timeout, and PostgreSQL then
        reports success with a warning that the commit is only local.
        That is a 451; the MTA's retry, once the standby is back, is
        recognised as the message already stored."""
        primary, standby = self.synchronous_pair()
        db = primary.database("quire")
        self.make_list(db)
        self.start_engine(db)
        first, second = stream_message(1), stream_message(2)

        def post(data):
            c = LMTP(self.engine.lmtp_port)
            try:
                return c.send("anne@example.com", [LIST], data)
            finally:
                c.close()

        self.assertRegex(post(first)[1][0],
                         r"^250 2\.0\.0 Queued as post \d+$")
        standby.stop("immediate")
        began = time.monotonic()
        codes, replies = post(second)
        waited = time.monotonic() - began
        self.assertEqual((codes, replies), ([250], [
            "451 4.3.0 Temporary failure storing the message, try again "
            "later"]))
        log = self.engine.log_text()
        self.assertIn("event=db_statement_timeout", log)
        self.assertIn("event=db_sync_commit_unconfirmed", log)
        self.assertRegex(log, r"event=lmtp_deferred .*msgid=<stream-2@"
                         r"failover.example> .*reason=\"commit not "
                         r"confirmed by the synchronous standby")
        # Committed here, not there: the post exists on the primary.
        pid = db.scalar("SELECT id FROM quire.post WHERE digest = "
                        "sha256(convert_to(:'v1', 'UTF8'))",
                        second.decode())
        self.assertIsNotNone(pid)
        # The MTA's retry while the standby is still away finds the post
        # stored here, but must not be told so: were the primary lost
        # now, the standby, promoted, would not have it.
        self.assertEqual(post(second), ([250], [
            "451 4.3.0 Temporary failure storing the message, try again "
            "later"]))
        standby.start()
        primary.wait_streaming("standby", sync=True)
        self.assertEqual(post(second)[1], [
            "250 2.0.0 Already queued as post %s" % pid])
        wait_for("the queue and the delivery table empty", lambda:
                 db.scalar("SELECT (SELECT count(*) FROM quire.queue) + "
                           "(SELECT count(*) FROM quire.delivery)") == "0")
        copies = self.copies_by_message()
        self.assertEqual(copies, collections.Counter({
            (message_id(i), r): 1 for i in (1, 2) for r in MEMBERS}))
        print("\nunconfirmed commit: 451 after %d ms (--commit-timeout 3)"
              % round(waited * 1000))

    def copy_times(self):
        """When the sink wrote each copy (its file's mtime)."""
        return [os.stat(os.path.join(self.sink.dir, e["file"])).st_mtime
                for e in self.sink.index()]

    def attempt_times(self, proc, since):
        """ms after `since` of each failed connection attempt of a
        worker, and of its connection."""
        out = []
        for ev, p, line in log_events(
                self.engine.log_text()[self.log_mark:]):
            if p != proc or ev not in ("db_connect_failed",
                                       "runner_ready"):
                continue
            ts = re.match(r"ts=(\S+)Z", line).group(1)
            t = calendar.timegm(time.strptime(ts[:19],
                                              "%Y-%m-%dT%H:%M:%S"))
            t += float("0" + ts[19:])
            out.append("%s@%d" % ("ok" if ev == "runner_ready" else "x",
                                  round((t - since) * 1000)))
        return " ".join(out)


if __name__ == "__main__":
    unittest.main()
