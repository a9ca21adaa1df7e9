"""Several engine hosts on one database, and one host cut off from it.

1. Five `quire run` processes share one database: three serve a
   different subset of the stages each, two serve all of them.  Each is
   stopped in turn while posts keep coming; the stream still completes,
   every stage takes effect once per post (counted from the stage_done
   lines, written after each commit, of every engine's log) and every
   member gets exactly one copy.

2. One engine runs in a network namespace of its own and reaches the
   database and its relay over a veth pair.  The link is cut while that
   engine holds claimed queue rows and a delivery lease, and no post
   comes while it is away; the other engines take its work over within
   a stated bound, nothing is lost,
   and once the link is back the cut-off engine sends nothing again but
   the one batch whose lease ran out while the relay's answer was on
   its way.
"""
import collections
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import harness
from harness import LMTP, LMTPError, Database, Sink, crlf, quire, wait_for
from pgcluster import PgCluster

LIST = "hosts@hosts.example"
STAGES = ("in", "posting", "decorate", "archive")


def post_bytes(seq):
    return crlf(("From: m0@d0.example\n"
                 "To: %s\n"
                 "Subject: hosts post %d\n"
                 "Message-ID: <hosts-%d@test.example>\n"
                 "\n"
                 "Post number %d of the stream.\n"
                 % (LIST, seq, seq, seq)).encode())


class Host:
    """One `quire run`, with debug logging (for the stage_done lines),
    optionally inside a network namespace."""

    def __init__(self, name, conninfo, relay, stages=None, extra=(),
                 netns=None, logdir=None):
        self.name = name
        self.stages = stages or "lmtp,in,posting,decorate,archive,out"
        self.lmtp_port = harness.free_port()
        self.log_path = os.path.join(logdir, name + ".log")
        args = [harness.QUIRE, "--db", conninfo, "run",
                "--lmtp", "127.0.0.1:%d" % self.lmtp_port,
                "--relay", relay, "--stages", self.stages] + list(extra)
        if netns:
            args = ["ip", "netns", "exec", netns] + args
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, stderr=self.log,
            env=dict(os.environ, QUIRE_LOG_LEVEL="debug"))
        self.stopping = False   # the stream sends it nothing more
        if "lmtp" in self.stages:
            wait_for("the LMTP greeting of " + name,
                     lambda: harness.lmtp_greets(self.lmtp_port),
                     timeout=20)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def events(self, name):
        """key=value dicts of this engine's lines for one event."""
        out = []
        for line in self.text().splitlines():
            if " event=%s " % name not in line and not line.endswith(
                    " event=" + name):
                continue
            out.append(dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)',
                                       line)))
        return out

    def stop(self):
        self.stopping = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
        return self.proc.returncode


class Stream(threading.Thread):
    """Posts over LMTP, one at a time, to whichever engine of `targets'
    is up: a refused or broken conversation is sent again to the next
    one, as an MTA would (the engine recognises a retry of a post that
    had committed)."""

    def __init__(self, targets, count=None, pause=0.02, first=1):
        super().__init__(daemon=True)
        self.targets = targets
        self.count = count
        self.pause = pause
        self.first = first
        self.sent = first - 1   # the last post accepted
        self.retries = 0
        self.replies = []
        self.halt = threading.Event()
        self.error = None
        self._turn = 0

    def _next_target(self):
        live = [h for h in self.targets if not h.stopping]
        if not live:
            raise AssertionError("no engine takes LMTP")
        self._turn += 1
        return live[self._turn % len(live)]

    def _send(self, seq):
        for _ in range(50):
            host = self._next_target()
            try:
                c = LMTP(host.lmtp_port, timeout=20)
                try:
                    _, replies = c.send("m0@d0.example", [LIST],
                                        post_bytes(seq))
                finally:
                    c.close()
                if replies and replies[0].startswith("250 "):
                    return replies[0]
            except (OSError, LMTPError):
                pass
            self.retries += 1
            time.sleep(0.05)
        raise AssertionError("post %d was never accepted" % seq)

    def run(self):
        try:
            seq = self.first - 1
            while not self.halt.is_set() and (self.count is None or
                                              seq < self.count):
                seq += 1
                self.replies.append(self._send(seq))
                self.sent = seq
                time.sleep(self.pause)
        except Exception as e:   # reported by the test's thread
            self.error = e


def copies_by_post(sinks):
    """{(seq, rcpt): copies} over the given sinks' stored messages."""
    counts = collections.Counter()
    for sink in sinks:
        for entry in sink.index():
            m = re.search(rb"Message-ID: <hosts-(\d+)@test\.example>",
                          sink.message(entry))
            counts[(int(m.group(1)) if m else -1, entry["rcpt"])] += 1
    return counts


def stage_done_counts(hosts):
    """{(stage, post): lines} over every engine's log, and the split."""
    total = collections.Counter()
    split = collections.OrderedDict()
    for h in hosts:
        mine = collections.Counter()
        for e in h.events("stage_done"):
            total[(e["stage"], int(e["post"]))] += 1
            mine[e["stage"]] += 1
        for e in h.events("delivery_batch"):
            mine["out"] += int(e["sent"])
        for e in h.events("lmtp_accept"):
            mine["lmtp"] += e["duplicate"] == "0"
        split[h.name] = mine
    return total, split


def check_each_stage_once(testcase, hosts, posts):
    """Every stage took effect exactly once for every post, counted over
    all engines' stage_done lines; returns the split per engine."""
    total, split = stage_done_counts(hosts)
    testcase.assertEqual(
        {k: v for k, v in total.items() if v != 1}, {},
        "a stage took effect twice for these (stage, post)")
    testcase.assertEqual(set(total), {(s, p) for s in STAGES
                                      for p in posts})
    return split


def print_split(title, split):
    cols = ("lmtp",) + STAGES + ("out",)
    print("\n%s (posts per stage; out: copies sent)" % title)
    print("  %-10s" % "engine" + "".join("%9s" % c for c in cols))
    for name, mine in split.items():
        print("  %-10s" % name + "".join("%9d" % mine[c] for c in cols))


def check_log_clean(testcase, hosts):
    """A sanitizer report or a crashed worker fails the test, as in
    harness.EngineTest."""
    for h in hosts:
        text = h.text()
        for bad in ("Sanitizer", "runtime error:", "event=worker_exited"):
            if bad in text:
                testcase.fail("%s's log has %r:\n%s" % (h.name, bad, "\n".join(
                    l for l in text.splitlines() if bad in l)[:4000]))


class HostsTest(unittest.TestCase):
    """Three engines with a subset of the stages each and two with all
    of them, on one database; each stopped in turn mid-stream."""

    POSTS = 150
    MEMBERS = ["m%d@d%d.example" % (i, i % 3) for i in range(8)]

    def setUp(self):
        if not harness.PG:
            self.skipTest("QUIRE_TEST_PG is not set (run make check)")
        self.tmp = tempfile.mkdtemp(prefix="quire-hosts-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.db = Database()
        self.addCleanup(self.db.drop)
        quire(self.db, "migrate")
        quire(self.db, "domain", "add", "hosts.example")
        quire(self.db, "list", "create", LIST)
        quire(self.db, "member", "add", LIST, *self.MEMBERS)
        self.sink = Sink()
        self.addCleanup(self.sink.stop)
        self.hosts = []

    def host(self, name, stages=None):
        h = Host(name, self.db.conninfo, "127.0.0.1:%d" % self.sink.port,
                 stages=stages, extra=("--lease", "20", "--retry-base", "1",
                                       "--out-connections", "2"),
                 logdir=self.tmp)
        self.hosts.append(h)
        self.addCleanup(h.stop)
        return h

    def tearDown(self):
        for h in self.hosts:
            h.stop()
        if self._failed() or os.environ.get("QUIRE_TEST_LOG"):
            for h in self.hosts:
                print("---- %s log (tail) ----\n%s" % (
                    h.name, "\n".join(h.text().splitlines()[-60:])))

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return result is not None and any(
            t is self for t, _ in result.failures + result.errors)

    def test_stages_spread_and_survive_stops(self):
        t0 = time.monotonic()
        lmtp_in = self.host("lmtp+in", "lmtp,in")
        mid = self.host("post+deco", "posting,decorate")
        tail = self.host("arch+out", "archive,out")
        all1 = self.host("all-1")
        all2 = self.host("all-2")
        stream = Stream([lmtp_in, all1, all2], count=self.POSTS)
        stream.start()
        # Each kind in turn, a fifth of the stream apart; all-2 is left.
        order = [lmtp_in, mid, tail, all1]
        stops = []
        for k, h in enumerate(order):
            at = self.POSTS * (k + 1) // (len(order) + 1)
            wait_for("post %d accepted" % at, lambda: stream.sent >= at or
                     stream.error)
            self.assertEqual(h.stop(), 0, h.name + " did not stop cleanly")
            stops.append((h.name, stream.sent))
        stream.join(harness.WAIT * 2)
        if stream.error:
            raise stream.error
        self.assertEqual(stream.sent, self.POSTS)
        want = self.POSTS * len(self.MEMBERS)
        wait_for("%d copies" % want, lambda: len(self.sink.index()) >= want)
        wait_for("an empty queue and ledger", lambda: self.db.scalar(
            "SELECT (SELECT count(*) FROM quire.queue) +"
            " (SELECT count(*) FROM quire.delivery)") == "0")
        # Nothing more is on its way: a late extra copy would show.
        all2.stop()
        elapsed = time.monotonic() - t0

        posts = {int(r[0]): int(r[1]) for r in self.db.query(
            "SELECT id, substring(message_id_header FROM 'hosts-([0-9]+)@')"
            "  FROM quire.post")}
        self.assertEqual(sorted(posts.values()),
                         list(range(1, self.POSTS + 1)))
        split = check_each_stage_once(self, self.hosts, posts)
        copies = copies_by_post([self.sink])
        self.assertEqual(copies, collections.Counter(
            {(seq, m): 1 for seq in range(1, self.POSTS + 1)
             for m in self.MEMBERS}))
        self.assertEqual(self.db.query(
            "SELECT count(*), count(DISTINCT (post_id, email))"
            "  FROM quire.delivery_log WHERE outcome = 'sent'"),
            [[str(want), str(want)]])
        # Every engine did some of the work of each stage it serves.
        for h in self.hosts:
            for stage in h.stages.split(","):
                self.assertGreater(split[h.name][stage], 0,
                                   "%s did no %s" % (h.name, stage))
        # One post per message: a retry of one that had committed was
        # recognised as such.
        accepts = [e for h in self.hosts for e in h.events("lmtp_accept")]
        self.assertEqual(len([e for e in accepts
                              if e["duplicate"] == "0"]), self.POSTS)
        check_log_clean(self, self.hosts)

        print_split("several hosts: %d posts, %d members, %d copies, "
                    "0 duplicates, LMTP retries %d, %.1f s" % (
                        self.POSTS, len(self.MEMBERS), len(copies),
                        stream.retries, elapsed), split)
        print("  stopped (SIGTERM) after post: " + ", ".join(
            "%s %d" % s for s in stops))


class HeldRowTest(harness.EngineTest):
    """Rows held by a session that then vanishes, as a lost host's would:
    one under a claim still in flight (uncommitted), one under a claim
    that committed, with a lease far longer than this engine's, and a
    batch that holds its lock.  Nothing announces their release and no
    post follows, yet an idle engine takes both within --claim-lease of
    the server ending that session."""

    CLAIM_LEASE = 2
    engine_args = ("--claim-lease", str(CLAIM_LEASE))
    LIST = "held@hosts.example"

    def inject(self, seq):
        path = tempfile.mktemp(prefix="quire-held-")
        with open(path, "wb") as f:
            f.write(post_bytes(seq).replace(LIST.encode(),
                                            self.LIST.encode()))
        out = quire(self.db, "inject", self.LIST, path).stdout.decode()
        os.unlink(path)
        m = re.fullmatch(r"queued as post (\d+)\n", out)
        self.assertIsNotNone(m, out)
        return self.db.scalar("SELECT id FROM quire.queue WHERE post_id ="
                              " :'v1'", m.group(1))

    def test_rows_of_a_vanished_session_are_taken_without_traffic(self):
        self.make_list(self.LIST, ["m0@d0.example"])
        in_flight, committed = self.inject(1), self.inject(2)
        holder = subprocess.Popen(
            ["psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-d",
             self.db.conninfo], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)
        self.addCleanup(holder.stdout.close)
        self.addCleanup(holder.stdin.close)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.kill)
        holder.stdin.write((
            "UPDATE quire.queue SET claim_token = 1, claimed_by = 'lost',"
            " claimed_pid = pg_backend_pid(),"
            " claimed_until = now() + interval '1 hour',"
            " attempts = attempts + 1 WHERE id = %s;"
            "BEGIN;"
            "SELECT id FROM quire.queue WHERE id = %s FOR UPDATE;"
            "UPDATE quire.queue SET claim_token = 2 WHERE id = %s;"
            "SELECT pg_backend_pid();\n" % (
                committed, committed, in_flight)).encode())
        holder.stdin.flush()
        self.assertEqual(holder.stdout.readline(),
                         committed.encode() + b"\n")
        pid = holder.stdout.readline().decode().strip()

        engine = self.start_engine()
        wait_for("the engine's first scan", lambda: "runner_scanned" in
                 engine.log_text())
        # A recheck or two with both rows still held.
        time.sleep(self.CLAIM_LEASE * 1.5)
        self.assertEqual(self.db.query(
            "SELECT id, stage FROM quire.queue ORDER BY id"),
            [[in_flight, "in"], [committed, "in"]])
        self.assertEqual(self.sink.index(), [])

        self.assertEqual(self.db.scalar(
            "SELECT pg_terminate_backend(:'v1')", pid), "t")
        gone = time.monotonic()
        copies = self.wait_copies(2)
        took = time.monotonic() - gone
        self.assertEqual(sorted(int(re.search(
            rb"hosts-(\d+)@", self.sink.message(c)).group(1))
            for c in copies), [1, 2])
        self.assertEqual(self.db.scalar("SELECT count(*) FROM quire.queue"),
                         "0")
        crashed = [dict(re.findall(r"(\w+)=(\S*)", l)) for l in
                   engine.log_text().splitlines()
                   if "event=stage_crashed" in l]
        self.assertEqual([(c["queue"], c["attempt"], c["crashes"])
                          for c in crashed], [(committed, "2", "1")])
        print("\n  held rows: taken %.1f s after their session ended, "
              "no post arriving (bound: --claim-lease %d s)" % (
                  took, self.CLAIM_LEASE))


def ip(*args, check=True):
    out = subprocess.run(["ip"] + list(args), capture_output=True)
    if check and out.returncode != 0:
        raise AssertionError("ip %s: %s" % (" ".join(args),
                                            out.stderr.decode().strip()))
    return out


def free_subnet():
    """A /30 of 192.0.2.0/24 (TEST-NET-1) that no interface here has,
    so that two runs at once do not meet: (host side, namespace side)."""
    taken = ip("-o", "-4", "addr", "show").stdout.decode()
    for k in range(62):
        n = 4 * (1 + (os.getpid() + k) % 62)
        host, ns = "192.0.2.%d" % (n + 1), "192.0.2.%d" % (n + 2)
        if host + "/" not in taken and ns + "/" not in taken:
            return host, ns
    raise AssertionError("no free /30 in 192.0.2.0/24")


class ClusterDb(Database):
    """A database on a cluster of the test's own (no harness cluster)."""

    def __init__(self, cluster, name):
        cluster.createdb(name)
        self.name = name
        self.conninfo = cluster.tcp() + " dbname=" + name
        self.admin = cluster.tcp() + " dbname=postgres"


class PartitionTest(unittest.TestCase):
    """One engine in a network namespace of its own, cut off mid-stream
    while it holds claimed queue rows and a delivery lease."""

    MEMBERS = ["p%d@d%d.example" % (i, i % 2) for i in range(9)]
    BATCH = 5           # max_recipients: two batches a post
    LEASE = 10          # --lease of the engine that is cut off
    CLAIM_LEASE = 10    # --claim-lease of every engine (the default)
    HOLD = 14           # its relay's delay before the 250 of its first batch
    # The server's view of a vanished client: keepalive probes after 2 s
    # of silence, one a second, two unanswered end it (4 s); 4 s for
    # data it sent that is never acknowledged; a backend waiting on a
    # lock looks at its socket every second.
    SERVER_CONF = ["tcp_keepalives_idle = 2", "tcp_keepalives_interval = 1",
                   "tcp_keepalives_count = 2", "tcp_user_timeout = 4000",
                   "client_connection_check_interval = 1000",
                   "idle_in_transaction_session_timeout = '60s'"]
    SERVER_BOUND = 2 + 1 * 2 + 1

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root for ip netns and veth")
        if shutil.which("ip") is None:
            self.skipTest("no ip(8) (iproute2)")
        tag = "qh%d" % (os.getpid() % 100000)
        self.ns, self.veth_host, self.veth_ns = tag, tag + "h", tag + "n"
        out = ip("netns", "add", self.ns, check=False)
        if out.returncode != 0:
            self.skipTest("ip netns is unavailable: " +
                          out.stderr.decode().strip())
        self.addCleanup(ip, "netns", "del", self.ns, check=False)
        self.addCleanup(ip, "link", "del", self.veth_host, check=False)
        self.host_ip, self.ns_ip = free_subnet()
        ip("link", "add", self.veth_host, "type", "veth", "peer", "name",
           self.veth_ns)
        ip("link", "set", self.veth_ns, "netns", self.ns)
        ip("addr", "add", self.host_ip + "/30", "dev", self.veth_host)
        ip("link", "set", self.veth_host, "up")
        self.in_ns("addr", "add", self.ns_ip + "/30", "dev", self.veth_ns)
        self.in_ns("link", "set", self.veth_ns, "up")
        self.in_ns("link", "set", "lo", "up")

        self.tmp = tempfile.mkdtemp(prefix="quire-partition-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cluster = PgCluster(conf=self.SERVER_CONF,
                                 listen=("127.0.0.1", self.host_ip))
        self.addCleanup(self.cluster.destroy)
        self.cluster.start()
        self.db = ClusterDb(self.cluster, "quire_partition")
        quire(self.db, "migrate")
        quire(self.db, "domain", "add", "hosts.example")
        quire(self.db, "list", "create", LIST)
        quire(self.db, "list", "set", LIST, "max_recipients",
              str(self.BATCH))
        quire(self.db, "member", "add", LIST, "m0@d0.example",
              *self.MEMBERS)
        self.lock = None
        self.hosts = []

    def in_ns(self, *args):
        return ip("netns", "exec", self.ns, "ip", *args)

    def tearDown(self):
        if self.lock is not None and self.lock.poll() is None:
            self.lock.kill()
            self.lock.wait()
        self.in_ns("link", "set", self.veth_ns, "up")
        for h in self.hosts:
            h.stop()
        if self._failed() or os.environ.get("QUIRE_TEST_LOG"):
            for h in self.hosts:
                print("---- %s log (no debug lines) ----\n%s" % (
                    h.name, "\n".join(l for l in h.text().splitlines()
                                      if "level=debug" not in l)[-6000:]))
            print("---- server log ----\n" + self.cluster.log_tail(60))

    def _failed(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        return result is not None and any(
            t is self for t, _ in result.failures + result.errors)

    def host(self, name, conninfo, relay, extra=(), netns=None,
             stages=None):
        h = Host(name, conninfo, relay, stages=stages, extra=extra,
                 netns=netns, logdir=self.tmp)
        self.hosts.append(h)
        self.addCleanup(h.stop)
        return h

    def activity(self):
        """The cut-off engine's sessions as the server sees them."""
        return self.db.query(
            "SELECT pid, application_name, state,"
            "       coalesce(wait_event_type, '-'),"
            "       coalesce(backend_xid::text, '-')"
            "  FROM pg_stat_activity WHERE client_addr = :'v1'"
            " ORDER BY application_name", self.ns_ip)

    def claimed_rows(self):
        """Queue rows locked by a transaction of the cut-off engine."""
        return self.db.query(
            "SELECT q.id, q.stage, q.post_id, a.application_name"
            "  FROM quire.queue q JOIN pg_stat_activity a"
            "    ON a.backend_xid::text = q.xmax::text"
            " WHERE a.client_addr = :'v1' ORDER BY q.id", self.ns_ip)

    def take_archive_lock(self):
        """Hold SHARE on quire.archive: the archive stage's INSERT waits
        there, inside its transaction, with its claimed rows locked."""
        self.lock = subprocess.Popen(
            ["psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1", "-d",
             self.db.conninfo], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)
        self.lock.stdin.write(b"BEGIN; LOCK TABLE quire.archive IN SHARE "
                              b"MODE; SELECT 'locked';\n")
        self.lock.stdin.flush()
        self.assertEqual(self.lock.stdout.readline(), b"locked\n")

    def release_archive_lock(self):
        self.lock.stdin.write(b"COMMIT;\n")
        self.lock.stdin.close()
        self.lock.wait(10)

    def test_partitioned_host_is_taken_over(self):
        sink = Sink()
        self.addCleanup(sink.stop)
        far_sink = Sink("--listen", self.host_ip, "--delay-data",
                        str(self.HOLD), "--delay-count", "1")
        self.addCleanup(far_sink.stop)
        local = self.cluster.tcp() + " dbname=" + self.db.name
        common = ("--retry-base", "1", "--smtp-timeout", "30")
        near = [self.host("near-%d" % i, local, "127.0.0.1:%d" % sink.port,
                          extra=common + ("--lease", "30")) for i in (1, 2)]
        # Client side: the cut-off engine gives up on a silent server
        # after 1 + 1 x 2 s, or 3 s of data never acknowledged.
        far_db = ("host=%s port=%d user=quire dbname=%s connect_timeout=2 "
                  "keepalives_idle=1 keepalives_interval=1 "
                  "keepalives_count=2 tcp_user_timeout=3000" % (
                      self.host_ip, self.cluster.port, self.db.name))
        far = self.host("far", far_db, "%s:%d" % (self.host_ip,
                                                   far_sink.port),
                        stages="in,posting,decorate,archive,out",
                        extra=common + ("--lease", str(self.LEASE),
                                        "--out-connections", "1"),
                        netns=self.ns)
        stream = Stream(near, pause=0.1)
        stream.start()
        self.addCleanup(stream.halt.set)

        # The far engine's first batch: stored by its relay, whose 250
        # is held back, so the lease is held at the cut.
        def far_lease():
            rows = self.db.query(
                "SELECT d.post_id, d.email, d.lease_token,"
                "       extract(epoch FROM d.lease_until - now())"
                "  FROM quire.delivery d JOIN pg_stat_activity a"
                "    ON a.application_name = d.leased_by"
                " WHERE a.client_addr = :'v1' AND d.state = 'leased'",
                self.ns_ip)
            return len(far_sink.index()) == len(rows) and rows
        batch = wait_for("a lease held by the far engine", far_lease)
        self.assertEqual(sorted(e["rcpt"] for e in far_sink.index()),
                         sorted(r[1] for r in batch))
        self.assertEqual(len({r[2] for r in batch}), 1)

        # Its runner caught inside a transaction with claimed rows.
        self.take_archive_lock()
        claimed = wait_for("the far runner holding claimed rows", lambda: [
            r for r in self.claimed_rows() if "archive" in r[3]] and any(
            "/out" not in a[1] and a[3] == "Lock"
            for a in self.activity()) and self.claimed_rows())
        # No post comes while the far engine is away: the near engines
        # take its work over on their own.
        stream.halt.set()
        stream.join(harness.WAIT)
        if stream.error:
            raise stream.error
        seen = self.activity()
        lease_left = float(far_lease()[0][3])
        self.assertGreater(lease_left, 0, "the lease ran out before the cut")
        print("\npartition: at the cut the server sees the far engine as")
        for a in seen:
            print("  pid=%s app=%s state=%s wait=%s xid=%s" % tuple(a))
        print("  claimed queue rows (xmax = its xid): " + ", ".join(
            "%s/%s post %s" % tuple(r[:3]) for r in claimed))
        print("  leased copies: post %s, %d recipients, %.1f s of lease "
              "left" % (batch[0][0], len(batch), lease_left))

        self.in_ns("link", "set", self.veth_ns, "down")
        cut, cut_wall = time.monotonic(), time.time()
        claimed_ids = [r[0] for r in claimed]
        marks = {}

        def taken_over():
            now = time.monotonic() - cut
            if "sessions" not in marks and not self.activity():
                marks["sessions"] = now
                self.release_archive_lock()
            if "rows" not in marks and self.db.scalar(
                    "SELECT count(*) FROM quire.queue WHERE id = ANY "
                    "(string_to_array(:'v1', ',')::bigint[])",
                    ",".join(claimed_ids)) == "0":
                marks["rows"] = now
            if "lease" not in marks and self.db.scalar(
                    "SELECT count(*) FROM quire.delivery"
                    " WHERE lease_token = :'v1'", batch[0][2]) == "0":
                marks["lease"] = now
            return len(marks) == 3
        wait_for("the near engines to take the far engine's work over",
                 taken_over, timeout=self.LEASE + 60, step=0.05)
        took = {r[1]: r[0] for r in self.db.query(
            "SELECT runner, email FROM quire.delivery_log"
            " WHERE post_id = :'v1' AND outcome = 'sent'"
            "   AND email = ANY (string_to_array(:'v2', ','))",
            batch[0][0], ",".join(r[1] for r in batch))}
        workers = {"%s/out" % e["worker_pid"]: h.name for h in near
                   for e in h.events("worker_started")}
        self.assertEqual(sorted(took), sorted(r[1] for r in batch))
        takers = sorted({workers.get(a.split("/", 2)[2], a)
                         for a in took.values()})
        self.assertTrue(set(takers) <= {h.name for h in near}, takers)

        # The link comes back; the far relay's held 250 reaches the far
        # engine, which finds its lease gone and sends nothing again.
        far_lines = len(far.events("stage_done"))
        self.in_ns("link", "set", self.veth_ns, "up")
        back = time.monotonic()
        stream = Stream(near, pause=0.1, first=stream.sent + 1)
        stream.start()
        self.addCleanup(stream.halt.set)
        learned = wait_for(
            "the far engine to learn its batch was taken over",
            lambda: [e["event"] for e in far.events("delivery_lease_lost") +
                     far.events("delivery_unrecorded")
                     if e["post"] == batch[0][0]],
            timeout=self.HOLD + 60)
        wait_for("the far engine working again", lambda: len(
            far.events("stage_done")) > far_lines + 4 and sum(
            int(e["sent"]) for e in far.events("delivery_batch")) > 0,
            timeout=60)
        stream.halt.set()
        stream.join(harness.WAIT)
        if stream.error:
            raise stream.error
        wait_for("an empty queue and ledger", lambda: self.db.scalar(
            "SELECT (SELECT count(*) FROM quire.queue) +"
            " (SELECT count(*) FROM quire.delivery)") == "0")
        for h in self.hosts:
            self.assertEqual(h.stop(), 0, h.name + " did not stop cleanly")

        members = ["m0@d0.example"] + self.MEMBERS
        posts = {int(r[0]): int(r[1]) for r in self.db.query(
            "SELECT id, substring(message_id_header FROM 'hosts-([0-9]+)@')"
            "  FROM quire.post")}
        self.assertEqual(sorted(posts.values()),
                         list(range(1, stream.sent + 1)))
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.archive"), str(stream.sent))
        again = {(posts[int(batch[0][0])], r[1]) for r in batch}
        copies = copies_by_post([sink, far_sink])
        want = collections.Counter({(seq, m): 1 for seq in posts.values()
                                    for m in members})
        for key in again:
            want[key] = 2
        self.assertEqual(copies, want)
        # The batch twice: the far relay's copies from before the cut,
        # and the near relay's from the takeover.
        for s_ in (sink, far_sink):
            self.assertEqual({(seq, m): n for (seq, m), n in
                              copies_by_post([s_]).items() if
                              (seq, m) in again}, dict.fromkeys(again, 1))
        self.assertEqual(self.db.query(
            "SELECT count(*) - count(DISTINCT (post_id, email))"
            "  FROM quire.delivery_log WHERE outcome = 'sent'"), [["0"]])
        split = check_each_stage_once(self, self.hosts, posts)
        # The rows the far runner held were done by a near one.
        for _, stage, post, _ in claimed:
            self.assertEqual(sum(1 for e in far.events("stage_done")
                                 if (e["stage"], e["post"]) ==
                                 (stage, post)), 0)
        check_log_clean(self, self.hosts)

        noticed = ["+%.1f s" % (time.mktime(time.strptime(
            e["ts"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone +
            float(e["ts"][19:-1] or 0) - cut_wall)
            for e in far.events("runner_db_lost")]
        print_split("partition: %d posts, %d members, %d copies, %d "
                    "duplicates (the leased batch, %d recipients)" % (
                        stream.sent, len(members), sum(copies.values()),
                        sum(copies.values()) - len(copies), len(again)),
                    split)
        print("  server ended the far engine's sessions %.1f s after the "
              "cut (bound: keepalive %d s + lock wait check 1 s)" % (
                  marks["sessions"], self.SERVER_BOUND - 1))
        print("  its claimed rows were done by a near engine %.1f s after "
              "the cut, no post arriving meanwhile (bound: the above + "
              "--claim-lease %d s)" % (marks["rows"], self.CLAIM_LEASE))
        print("  its leased batch was sent again by %s %.1f s after the "
              "cut; the lease had %.1f s left (bound: --lease %d s from "
              "the claim)" % (",".join(takers), marks["lease"], lease_left,
                              self.LEASE))
        print("  the far engine saw the database gone at %s after the "
              "cut; link back after %.1f s; then its held 250: %s" % (
                  ", ".join(noticed), back - cut, ",".join(learned)))
