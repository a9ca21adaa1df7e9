"""A crash at any instant loses nothing and sends nothing twice but the
batch in flight.

A driver posts a stream of messages over LMTP to a list of 1 member and a
list of 100 while it SIGKILLs engine processes at random moments: the
LMTP worker, the pipeline worker, the out worker, or the whole engine
(its process group; a new engine then starts on the same database).  It
behaves as an MTA does: a message whose reply never came (the kill
dropped the connection) or came back 4xx is sent again later with the
same bytes until it gets a 250.  A few messages are abandoned mid-DATA
by the driver itself and never sent again.

At the end every message that got a 250 has reached every member, and
the copies a member got of a message number exactly 1, or more only
where a killed out worker had leased a batch of that post and never
recorded it (the one re-send the README allows): the log names each
leased batch by its token (event=delivery_leased), and the batch's
record line carries the same token; the database counts each copy's
leases (attempt) and records it once.

The seed is printed; QUIRE_CRASH_SEED replays a run's choices (the
timing of a run on a shared machine is never the same twice).
"""
import collections
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (QUIRE, EngineTest, Engine, LMTP, LMTPError, Sink,
                     crlf, dot_stuff, free_port, wait_for, WAIT)

KILLS = 200
# Kill targets and how often each is chosen.
TARGETS = (("lmtp", 28), ("pipeline", 28), ("out", 30), ("engine", 14))
# Long enough that a live batch (100 copies to a local sink) is never
# overtaken on a loaded 2-core machine under the sanitizer, short enough
# that the batches the kills leave behind are sent again in the run.
LEASE = 6
SENDERS = 2
ABANDON_ONE_IN = 40     # messages the driver drops mid-DATA, for good
NEW_EVERY = (0.1, 0.4)  # seconds between new messages

ONE = "one@crash.example"
HUNDRED = "hundred@crash.example"
POSTER = "poster@members.example"
MEMBERS = {
    ONE: [POSTER],
    HUNDRED: [POSTER] + ["m%02d@%s.example" % (i, ("a", "b", "c")[i % 3])
                         for i in range(1, 100)],
}

WORKER_STARTED = re.compile(
    r"event=worker_started .*worker=(\w+) worker_pid=(\d+)")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def fields(line):
    return {k: v for k, v in FIELD.findall(line)}


def process_state(pid):
    """The state letter of /proc/PID/stat and its parent, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[1].split()
    return rest[0], int(rest[1])


def alive(pid):
    st = process_state(pid)
    return st is not None and st[0] not in ("Z", "X")


class CrashEngine(Engine):
    """`quire run` as Engine starts it, but in a session of its own, so
    that the whole engine can be killed at once with its process group,
    and with the log read line by line as it grows."""

    def __init__(self, db, relay_port, *extra):
        self.lmtp_port = free_port()
        self.log_path = tempfile.mktemp(prefix="quire-crash-",
                                        suffix=".log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [QUIRE, "--db", db.conninfo, "run",
             "--lmtp", "127.0.0.1:%d" % self.lmtp_port,
             "--relay", "127.0.0.1:%d" % relay_port] + list(extra),
            stderr=self.log, start_new_session=True)
        self.read_offset = 0
        self.workers = {}           # kind -> latest pid
        self.all_workers = set()
        wait_for("the LMTP greeting", self._greets, timeout=WAIT)

    def poll_log(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            f.seek(self.read_offset)
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        self.read_offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            m = WORKER_STARTED.search(line)
            if m:
                self.workers[m.group(1)] = int(m.group(2))
                self.all_workers.add(int(m.group(2)))

    def worker(self, kind, not_pid):
        """The running worker of a kind, once it is not not_pid."""
        def fresh():
            self.poll_log()
            pid = self.workers.get(kind)
            return pid if pid and pid != not_pid and alive(pid) else None
        return wait_for("a new %s worker" % kind, fresh, timeout=WAIT)

    def kill_worker(self, pid):
        # Only a child of this engine's supervisor, never a reused pid.
        st = process_state(pid)
        if st is None or st[1] != self.proc.pid:
            return False
        os.kill(pid, signal.SIGKILL)
        return True

    def kill_all(self):
        """SIGKILL the supervisor and its workers at the same instant."""
        self.poll_log()
        if self.proc.poll() is not None:
            raise AssertionError("the engine exited by itself (%d)"
                                 % self.proc.returncode)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        wait_for("the killed workers to go", lambda: not any(
            alive(p) for p in self.all_workers), timeout=WAIT)
        self.log.close()


class Message:
    def __init__(self, n, seed, listname, abandon):
        self.n = n
        self.list = listname
        self.msgid = "<crash-%d.%d@driver.example>" % (n, seed)
        self.abandon = abandon
        self.data = crlf((
            "From: Poster <%s>\nTo: %s\nSubject: crash %d\n"
            "Date: Sat, 05 Dec 2026 10:00:00 +0000\nMessage-ID: %s\n\n"
            "Message %d of the crash run.\n%s" % (
                POSTER, listname, n, self.msgid, n,
                "".join("line %d of the body\n" % i for i in range(n % 40)))
        ).encode())
        self.tries = 0
        self.reply = None           # the 250, once it came
        self.due = 0.0


class MTAConnection(LMTP):
    """An LMTP connection that knows its port and closes its socket when
    the greeting never comes."""

    def __init__(self, port):
        self.port = port
        try:
            super().__init__(port, timeout=30)
        except (OSError, LMTPError):
            if getattr(self, "sock", None) is not None:
                self.sock.close()
            raise


class Driver:
    """The MTA side: SENDERS threads posting, retrying what got no 250."""

    def __init__(self, seed):
        self.rng = random.Random(seed ^ 0x5eed)
        self.seed = seed
        self.lock = threading.Lock()
        self.port = None
        self.posting = True
        self.stopping = False
        self.messages = []
        self.retry = []
        self.pending = 0            # messages still to get a 250
        self.retries = 0
        self.tempfails = 0
        self.dropped = 0
        self.errors = []
        self.next_new = 0.0

    def set_port(self, port):
        with self.lock:
            self.port = port

    def _next(self):
        """A message to send now, or a wait in seconds, or None: done."""
        with self.lock:
            now = time.monotonic()
            self.retry.sort(key=lambda m: m.due)
            if self.retry and self.retry[0].due <= now:
                return self.retry.pop(0), self.port
            if self.posting and now >= self.next_new:
                # New mail arrives at its own pace, whatever the retries.
                self.next_new = max(self.next_new, now - 1) + \
                    self.rng.uniform(*NEW_EVERY)
                n = len(self.messages) + 1
                m = Message(n, self.seed,
                            self.rng.choice((ONE, HUNDRED)),
                            self.rng.randrange(ABANDON_ONE_IN) == 0)
                self.messages.append(m)
                if not m.abandon:
                    self.pending += 1
                return m, self.port
            if (self.pending == 0 and not self.posting) or self.stopping:
                return None, None
            due = [m.due for m in self.retry[:1]]
            if self.posting:
                due.append(self.next_new)
            return (min(due) - now if due else 0.05), None

    def _later(self, m, why):
        with self.lock:
            if why == "4xx":
                self.tempfails += 1
            else:
                self.dropped += 1
            m.due = time.monotonic() + self.rng.uniform(0.1, 0.5)
            self.retry.append(m)

    def _accepted(self, m, reply):
        with self.lock:
            m.reply = reply
            self.pending -= 1

    def sender(self):
        conn = None
        pace = random.Random(self.seed + threading.get_ident())
        while True:
            m, port = self._next()
            if m is None:
                break
            if not isinstance(m, Message):
                time.sleep(min(m, 0.1))
                continue
            m.tries += 1
            if m.tries > 1:
                with self.lock:
                    self.retries += 1
            try:
                if port is None:
                    raise OSError("no engine")
                if conn is None or conn.port != port:
                    if conn is not None:
                        conn.sock.close()
                    conn = MTAConnection(port)
                if m.abandon:
                    self._abandon(conn, m)
                    conn = None
                    continue
                codes, replies = conn.send(POSTER, [m.list], m.data)
                if codes != [250] or not replies or \
                        not replies[0].startswith("250 "):
                    code = (replies[0][:3] if replies and codes == [250]
                            else str(codes[0]))
                    if not code.startswith("4"):
                        self.errors.append((m.msgid, codes, replies))
                        return
                    self._later(m, "4xx")
                    continue
                self._accepted(m, replies[0])
            except (OSError, LMTPError):
                if conn is not None:
                    conn.sock.close()
                conn = None
                if not m.abandon:
                    self._later(m, "dropped")
                # As an MTA does when the connection fails: not at once.
                time.sleep(pace.uniform(0.05, 0.2))
                continue
        if conn is not None:
            conn.close()

    def _abandon(self, conn, m):
        """MAIL, RCPT, DATA and half the message, then hang up."""
        conn.command(b"MAIL FROM:<" + POSTER.encode() + b">")
        conn.command(b"RCPT TO:<" + m.list.encode() + b">")
        conn.command(b"DATA")
        body = dot_stuff(m.data)
        conn.sock.sendall(body[:len(body) // 2])
        conn.sock.close()


class CrashTest(EngineTest):

    expect_worker_exits = True

    def setUp(self):
        super().setUp()
        for fqdn, members in MEMBERS.items():
            self.make_list(fqdn, members)
        self.engines = []

    def tearDown(self):
        super().tearDown()
        # The logs of a failed run stay for a look.
        if not self._outcome_failed():
            for e in self.engines:
                os.unlink(e.log_path)

    def start_crash_engine(self):
        e = CrashEngine(self.db, self.sink.port, "--lease", str(LEASE),
                        "--restart-max", "0")
        self.engines.append(e)
        self.engine = e
        return e

    def test_kills_lose_nothing_and_resend_only_batches_in_flight(self):
        seed = int(os.environ.get("QUIRE_CRASH_SEED") or
                   random.SystemRandom().randrange(1 << 32))
        print("\ncrash: seed=%d (QUIRE_CRASH_SEED=%d replays it)" % (
            seed, seed))
        t0 = time.monotonic()
        rng = random.Random(seed)
        driver = Driver(seed)
        engine = self.start_crash_engine()
        driver.set_port(engine.lmtp_port)
        senders = [threading.Thread(target=driver.sender, daemon=True)
                   for _ in range(SENDERS)]
        for t in senders:
            t.start()

        # killed: every pid a SIGKILL reached, with its kind.
        killed = {}
        kills = collections.Counter()
        try:
            kill_time = self.kill_loop(rng, driver, kills, killed)
            # No more kills: the retries get their 250s.
            with driver.lock:
                driver.posting = False
            wait_for("a 250 for every message", lambda: (
                driver.pending == 0 or driver.errors), timeout=WAIT)
        finally:
            # Never leave a sender posting to a port another test's
            # engine may get next.
            with driver.lock:
                driver.posting = False
                driver.stopping = True
            for t in senders:
                t.join(WAIT)
        self.assertEqual(driver.errors, [])
        # Then the engine drains, the leases the kills left included,
        # and the live out worker has logged its last record.
        drained = "SELECT (SELECT count(*) FROM quire.queue) +" \
            "       (SELECT count(*) FROM quire.delivery)"
        try:
            wait_for("an empty queue and delivery table", lambda:
                     self.db.query(drained) == [["0"]],
                     timeout=3 * LEASE + WAIT)
        except AssertionError:
            raise AssertionError("not drained: %r" % self.db.query(
                "SELECT * FROM quire.queue_depth"))
        wait_for("the last record lines", self.records_logged)
        wall = time.monotonic() - t0
        self.check(driver, kills, killed, kill_time, wall)

    def records_logged(self):
        """Every batch the running out worker leased has its record line
        (written just after the record commits)."""
        self.engine.poll_log()
        leased, ended, _, _ = self.read_logs()
        out = self.engine.workers.get("out")
        return not [t for t, v in leased.items()
                    if v[2] == out and t not in ended]

    def kill_loop(self, rng, driver, kills, killed):
        """KILLS SIGKILLs at random moments, each target chosen by rng;
        returns the seconds it took."""
        t0 = time.monotonic()
        engine = self.engine
        last_killed = {}
        names = [t for t, _ in TARGETS]
        weights = [w for _, w in TARGETS]
        while sum(kills.values()) < KILLS:
            time.sleep(rng.uniform(0.02, 0.45))
            target = rng.choices(names, weights)[0]
            if target == "engine":
                driver.set_port(None)
                engine.kill_all()
                kills[target] += 1
                engine = self.start_crash_engine()
                driver.set_port(engine.lmtp_port)
                continue
            pid = engine.worker(target, last_killed.get(target))
            if engine.kill_worker(pid):
                killed[pid] = target
                last_killed[target] = pid
                kills[target] += 1
        return time.monotonic() - t0

    def check(self, driver, kills, killed, kill_time, wall):
        # Every process of a killed engine died with it: its supervisor,
        # and its workers, by the name (proc=) they log under.
        for e in self.engines[:-1]:
            for line in e.log_text().splitlines():
                f = fields(line)
                if f.get("pid") and f.get("proc") != "quire":
                    killed.setdefault(int(f["pid"]), f["proc"])
        accepted = [m for m in driver.messages if m.reply]
        abandoned = [m for m in driver.messages if m.abandon]
        already = [m for m in accepted if "Already" in m.reply]
        posts = self.db.query(
            "SELECT p.id, p.message_id_header, l.list_name || '@' ||"
            "       d.mail_host, p.status"
            "  FROM quire.post p JOIN quire.list l ON l.id = p.list_id"
            "  JOIN quire.domain d ON d.id = l.domain_id")
        post_msgid = {r[0]: r[1] for r in posts}

        # The copies at the sink, per (message, member).
        copies = collections.Counter()
        for c in self.sink.index():
            head = self.sink.message(c).split(b"\r\n\r\n", 1)[0]
            mid = re.search(rb"(?mi)^Message-ID: *(\S+)", head)
            copies[(mid.group(1).decode() if mid else None,
                    c["rcpt"])] += 1
        expected = {(m.msgid, member) for m in accepted
                    for member in MEMBERS[m.list]}

        # The database: how often each copy was recorded and leased.
        recorded = {}
        for post_id, email, n, outcome, code, attempt in self.db.query(
                "SELECT post_id, email, count(*), min(outcome),"
                "       min(code), max(attempt)"
                "  FROM quire.delivery_log GROUP BY post_id, email"):
            recorded[(post_msgid.get(post_id), email)] = (
                int(n), outcome, int(code), int(attempt))

        # The log: every leased batch and how it ended, every worker
        # that died, anything said above info.
        leased, ended, exits, alarms = self.read_logs()
        # In flight: leased, then never recorded.
        in_flight = {t: v for t, v in leased.items() if t not in ended}
        in_flight_posts = collections.Counter(
            post_msgid.get(v[0]) for v in in_flight.values())
        in_flight_rcpts = collections.Counter()
        for post, rcpts, _ in in_flight.values():
            in_flight_rcpts[post_msgid.get(post)] += rcpts
        resent = collections.Counter()
        for (msgid, _), n in copies.items():
            resent[msgid] += n - 1
        hist = collections.Counter(copies.values())
        dups = {k: n for k, n in copies.items() if n > 1}
        unlogged = {k[0] for k, v in recorded.items()
                    if v[3] - 1 > in_flight_posts[k[0]]}

        print("crash: messages=%d 250s=%d (already queued: %d) "
              "abandoned mid-DATA=%d" % (
                  len(driver.messages), len(accepted), len(already),
                  len(abandoned)))
        print("crash: retries=%d (no reply: %d, 4xx: %d)" % (
            driver.retries, driver.dropped, driver.tempfails))
        print("crash: kills=%d %s (engines started: %d)" % (
            sum(kills.values()), " ".join(
                "%s=%d" % (t, kills[t]) for t, _ in TARGETS),
            len(self.engines)))
        print("crash: copies=%d for %d (message, member) pairs; copies "
              "per pair: %s" % (
                  sum(copies.values()), len(expected), " ".join(
                      "%dx%d" % (k, hist[k]) for k in sorted(hist))))
        print("crash: batches leased=%d in flight in a killed worker=%d "
              "(%d posts); duplicated pairs=%d over %d posts; leases "
              "the log never saw (committed as their worker died)=%d" % (
                  len(leased), len(in_flight), len(in_flight_posts),
                  len(dups), len({k[0] for k in dups}), len(unlogged)))
        for msgid in sorted({k[0] for k in dups}):
            print("crash:   %s: %d copies re-sent, %d batches (%d "
                  "copies) in flight when killed" % (
                      msgid, resent[msgid], in_flight_posts[msgid],
                      in_flight_rcpts[msgid]))
        print("crash: wall=%.1fs (kills %.1fs) lease=%ds" % (
            wall, kill_time, LEASE))

        self.assertGreaterEqual(sum(kills.values()), KILLS)
        # Each message the driver kept sending got one 250 in the end,
        # is one post, accepted, on its list; the abandoned ones are
        # not posts at all.
        self.assertEqual(len(accepted) + len(abandoned),
                         len(driver.messages))
        self.assertEqual(sorted(r[1] for r in posts),
                         sorted(m.msgid for m in accepted))
        by_msgid = {r[1]: r for r in posts}
        for m in accepted:
            self.assertRegex(m.reply,
                             r"^250 2\.0\.0 (Already q|Q)ueued as post \d+$")
            self.assertEqual(by_msgid[m.msgid], [
                m.reply.rsplit(" ", 1)[1], m.msgid, m.list, "accepted"])
        # Nothing shunted, held or left behind.
        self.assertEqual(self.db.query(
            "SELECT (SELECT count(*) FROM quire.shunted),"
            "       (SELECT count(*) FROM quire.held),"
            "       (SELECT count(*) FROM quire.queue),"
            "       (SELECT count(*) FROM quire.delivery)"),
            [["0", "0", "0", "0"]])
        # Every member got every accepted message, and nothing else came.
        self.assertEqual(set(copies) - expected, set(),
                         "copies of what was never accepted")
        self.assertEqual(expected - set(copies), set(), "copies lost")
        # Each copy was recorded once, as sent.
        self.assertEqual(set(recorded), expected)
        self.assertEqual({v[:3] for v in recorded.values()},
                         {(1, "sent", 250)})
        # Workers died only of this test's kills, and said nothing above
        # info but that.
        self.assertEqual([(p, s) for p, s in exits
                          if p not in killed or s != "9"], [])
        self.assertEqual(alarms, [])
        # A row is blamed for a crash only when a runner holding it was
        # killed, so never more often than runners were.
        runner_kills = kills["pipeline"] + kills["engine"]
        print("crash: rows blamed for a kill=%d (most blames on one row: "
              "%d, of %d runner kills)" % (
                  len(self.crashed), max(self.crashed, default=0),
                  runner_kills))
        self.assertLessEqual(max(self.crashed, default=0), runner_kills)
        # A batch with no record line was leased by an out worker that
        # was killed before it wrote one.
        self.assertEqual(set(ended) - set(leased), set())
        self.assertEqual({t: v for t, v in in_flight.items()
                          if killed.get(v[2]) != "out"}, {})
        # A copy came once, or once more for each batch of its post that
        # was in flight when its worker was killed (two such batches
        # are rare but possible: the re-send of a batch is a batch in
        # flight like any other); and never more often than the database
        # leased that very copy (attempt).  The batches in flight held at
        # least as many copies as came again.
        for key, n in copies.items():
            self.assertLessEqual(n - 1, in_flight_posts[key[0]], key)
            self.assertLessEqual(n, recorded[key][3], key)
        self.assertEqual({m: n for m, n in resent.items()
                          if n > in_flight_rcpts[m]}, {})

    def read_logs(self):
        leased = {}                 # token -> (post, rcpts, worker pid)
        ended = {}                  # token -> its record line
        exits = []                  # (worker pid, signal)
        alarms = []
        self.crashed = []           # crashes counted on a row, per line
        for e in self.engines:
            for line in e.log_text().splitlines():
                f = fields(line)
                ev = f.get("event")
                if ev == "delivery_leased":
                    leased[f["token"]] = (f["post"], int(f["rcpts"]),
                                          int(f["pid"]))
                elif ev == "delivery_batch":
                    ended[f["token"]] = line
                    if (f["deferred"], f["bounced"], f["expired"],
                            f["stale"]) != ("0", "0", "0", "0"):
                        alarms.append(line)
                elif ev == "worker_exited":
                    exits.append((int(f["worker_pid"]), f["signal"]))
                    continue
                elif ev == "stage_crashed":
                    # A killed runner's rows are blamed when they are
                    # claimed again; checked against the kills below.
                    self.crashed.append(int(f["crashes"]))
                    continue
                if f.get("level") not in ("debug", "info") or \
                        "Sanitizer" in line or "runtime error:" in line:
                    alarms.append(line)
        return leased, ended, exits, alarms


class SinkCutOffTest(unittest.TestCase):
    """The sink counts a copy only once its final dot is in: a copy a
    kill cuts off mid-DATA is no copy, or the counts above would lie."""

    def setUp(self):
        self.sink = Sink()

    def tearDown(self):
        self.sink.stop()

    def smtp(self, data):
        with socket.create_connection(("127.0.0.1", self.sink.port),
                                      timeout=WAIT) as s:
            f = s.makefile("rb")
            f.readline()
            s.sendall(b"HELO crash.example\r\nMAIL FROM:<a@crash.example>"
                      b"\r\nRCPT TO:<b@crash.example>\r\nDATA\r\n")
            for _ in range(4):
                f.readline()
            s.sendall(data)
            if data.endswith(b"\r\n.\r\n"):
                return f.readline()
            return None

    def test_only_copies_whose_final_dot_came_are_counted(self):
        body = b"Subject: cut\r\n\r\n" + b"x" * 5000 + b"\r\n"
        # Cut mid-body, after the line end before the dot, and after the
        # dot but before its line end.
        for cut in (body[:2000], body, body + b".", body + b".\r"):
            self.assertIsNone(self.smtp(cut))
        reply = self.smtp(body + b".\r\n")
        self.assertTrue(reply.startswith(b"250 "), reply)
        wait_for("the finished copy", lambda: self.sink.index())
        self.assertEqual([(c["rcpt"], c["size"]) for c in
                          self.sink.index()], [("b@crash.example",
                                                len(body))])
