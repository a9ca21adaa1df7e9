"""Hostile LMTP clients and a hostile SMTP relay against a real engine.

LMTP: garbage, stalls, 50 MB without a newline, a pool-filling crowd of
big messages, clients that drop during DATA and 500 connections at once,
while a well-behaved client keeps posting on its own connection; every
message it sent must be accepted and delivered exactly once per member,
and nothing a hostile client sent may be stored or delivered.

SMTP: a relay written here (127.0.0.1 only) that greets with garbage,
answers garbage, stalls mid-reply, sends a 50 MB reply line, drops the
connection during DATA, answers the final dot before it was sent, and
then behaves; the copies stay queued until it behaves, and then each
member gets exactly one.

Memory: the workers' VmHWM against a bound derived from the options (the
figures are printed).
"""
import os
import re
import resource
import socket
import threading
import time

from harness import (LMTP, LMTPError, Engine, EngineTest, crlf, quire,
                     wait_for)

MEMBERS = ["anne@example.com", "bob@example.net", "carol@example.org"]
LIST = "hostile@example.org"
KIB = 1024
MIB = 1024 * 1024
BIG = 50 * MIB                  # the flood without a newline

# The LMTP engine's limits, small so that the test reaches them.
MAX_CLIENTS = 100
MAX_SIZE = 1 * MIB
MAX_RCPTS = 10
IDLE = 3                        # --idle-timeout and --data-timeout
DB_CONNECTIONS = 4              # --lmtp-db-connections (the default)
# Four messages of MAX_SIZE and the well-behaved client's small ones.
MAX_BUFFERED = 4 * MAX_SIZE + 256 * KIB
ENGINE_NOFILE = 64              # the engine starts with this soft limit

# From engine/lmtp_server.c: input 16 KiB + a read chunk, output
# 2 x 16 KiB, the session ~2 KiB; then max_rcpts x 2 KiB of addresses.
CONN_BYTES = 50 * KIB + MAX_RCPTS * 2 * KIB
# Allocator slack, libevent and libpq state beyond the figures above.
SLACK = 8 * MIB
# Under ASan freed blocks wait in a quarantine before reuse (256 MiB by
# default, more than the bound); the engines here get a small one.
ASAN_QUARANTINE = 16 * MIB


def raise_nofile(want):
    """Room for the test's own sockets; the hard limit too when root."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            return soft
        return want
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return max(soft, want)


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * KIB
    return out


def sanitized(pid):
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def worker_pid(engine, worker):
    """The latest pid of a worker, from its worker_started line."""
    pids = re.findall(r"event=worker_started .*worker=%s worker_pid=(\d+)"
                      % worker, engine.log_text())
    return int(pids[-1]) if pids else None


def count(log, pattern):
    return len(re.findall(pattern, log))


def first_line(sock):
    """The first line a server sends on a fresh socket, CRLF kept."""
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(200)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def message(msgid, body=b"body\n", subject=b"hello"):
    return crlf(b"From: anne@example.com\nTo: " + LIST.encode() +
                b"\nSubject: " + subject + b"\nMessage-ID: <" +
                msgid.encode() + b">\n\n" + body)


class Raw:
    """A raw LMTP client that sends whatever it is given."""

    def __init__(self, port, lhlo=True, timeout=20):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""
        self.greeting = self.line()
        if lhlo:
            self.send(b"LHLO hostile.example\r\n")
            while True:
                line = self.line()
                if line is None or line[3:4] != "-":
                    break

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def flood(self, n, byte=b"x"):
        """n bytes with no line end; the bytes sent."""
        chunk = byte * MIB
        sent = 0
        while sent < n:
            if not self.send(chunk[:min(MIB, n - sent)]):
                break
            sent += min(MIB, n - sent)
        return sent

    def line(self):
        """One reply line without CRLF; None at EOF."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")

    def begin(self):
        self.send(b"MAIL FROM:<anne@example.com>\r\nRCPT TO:<" +
                  LIST.encode() + b">\r\nDATA\r\n")
        return [self.line() for _ in range(3)]

    def eof(self):
        return self.line() is None

    def close(self):
        self.sock.close()


class Steady(threading.Thread):
    """The well-behaved client: one connection, a post every 0.3 s.  Its
    lock pauses it; post() may also be called from the test."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.accepted = []          # Message-IDs answered 250
        self.failures = []
        self.reconnects = 0
        self.client = LMTP(port)
        self.last = time.monotonic()

    def post(self):
        msgid = "steady-%d@example.com" % (len(self.accepted) +
                                             len(self.failures))
        try:
            codes, replies = self.client.send(
                "anne@example.com", [LIST], message(msgid))
        except (OSError, LMTPError) as e:
            # Only a connection left idle past the timeout may be lost.
            if time.monotonic() - self.last <= IDLE - 0.5:
                self.failures.append("%s: %s" % (msgid, e))
                return None
            self.reconnects += 1
            self.client = LMTP(self.port)
            codes, replies = self.client.send(
                "anne@example.com", [LIST], message(msgid))
        self.last = time.monotonic()
        if codes == [250] and len(replies) == 1 and \
                replies[0].startswith("250 2.0.0 Queued as post "):
            self.accepted.append(msgid)
            return msgid
        self.failures.append("%s: %r %r" % (msgid, codes, replies))
        return None

    def run(self):
        while not self.stop.wait(0.3):
            with self.lock:
                self.post()

    def finish(self):
        self.stop.set()
        self.join(30)
        self.client.close()


class LmtpHostileTest(EngineTest):
    engine_args = ("--max-clients", str(MAX_CLIENTS),
                   "--idle-timeout", str(IDLE),
                   "--data-timeout", str(IDLE),
                   "--max-size", str(MAX_SIZE),
                   "--max-rcpts", str(MAX_RCPTS),
                   "--max-buffered", str(MAX_BUFFERED),
                   "--retry-base", "1", "--retry-max", "1")

    def setUp(self):
        super().setUp()
        self.nofile = raise_nofile(1024)
        if self.nofile < 600:
            self.skipTest("RLIMIT_NOFILE %d is too low for 500 "
                          "connections" % self.nofile)
        self.make_list(LIST, MEMBERS)
        # Big posts are the point: no hold for size.
        quire(self.db, "list", "set", LIST, "max_message_size", "0")
        quire(self.db, "list", "set", LIST, "accept_size_limit", "0")
        self.steady = None

    def tearDown(self):
        if self.steady is not None and self.steady.is_alive():
            self.steady.finish()
        super().tearDown()

    def start_low_nofile(self):
        """The engine starts with a soft limit too low for max-clients:
        the LMTP worker must raise it itself."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

        def low():
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (ENGINE_NOFILE, hard))
        saved = os.environ.get("ASAN_OPTIONS")
        os.environ["ASAN_OPTIONS"] = ((saved + ":") if saved else "") + \
            "quarantine_size_mb=%d" % (ASAN_QUARANTINE // MIB)
        try:
            return self.start_engine(preexec_fn=low)
        finally:
            if saved is None:
                del os.environ["ASAN_OPTIONS"]
            else:
                os.environ["ASAN_OPTIONS"] = saved

    def lmtp_mem(self):
        return proc_status(self.lmtp_pid)

    def sessions(self):
        """LMTP sessions open, by the engine's own log lines."""
        log = self.engine.log_text()
        return (count(log, r"event=lmtp_connect ") -
                count(log, r"event=lmtp_disconnect "))

    def wait_sessions(self, n):
        wait_for("%d LMTP sessions" % n, lambda: self.sessions() == n)

    def wait_read(self, clients):
        """Until the engine has read everything the clients sent: their
        send queues and the engine's receive queues are empty."""
        mine = {c.sock.getsockname()[1] for c in clients}
        port = self.engine.lmtp_port

        def drained():
            with open("/proc/net/tcp") as f:
                rows = [l.split() for l in f.readlines()[1:]]
            for r in rows:
                local = int(r[1].split(":")[1], 16)
                remote = int(r[2].split(":")[1], 16)
                tx, rx = (int(x, 16) for x in r[4].split(":"))
                if local in mine and remote == port and tx:
                    return False
                if local == port and remote in mine and rx:
                    return False
            return True
        wait_for("the engine to read what was sent", drained)

    def test_hostile_clients(self):
        t0 = time.monotonic()
        self.start_low_nofile()
        log = self.engine.log_text
        self.lmtp_pid = wait_for("the lmtp worker",
                                 lambda: worker_pid(self.engine, "lmtp"))
        self.out_pid = worker_pid(self.engine, "out")
        self.steady = Steady(self.engine.lmtp_port)
        self.assertEqual(self.steady.post(), "steady-0@example.com")
        self.wait_copies(3)
        base = self.lmtp_mem()
        self.steady.start()
        figures = {}

        # Garbage: binary bytes, NULs, an overlong line, then so many
        # errors that the engine gives up on the client.
        c = Raw(self.engine.lmtp_port)
        c.send(b"\x16\x03\x01\x02\x00\x01\x00\xff\xfe\x80junk\r\n")
        self.assertEqual(c.line(), "500 5.5.2 Command unrecognized")
        c.send(b"NOOP\x00\x00\r\n")
        self.assertEqual(c.line(), "500 5.5.2 Command unrecognized")
        c.send(b"MAIL FROM:<anne\x00@example.com>\r\n")
        self.assertEqual(c.line(), "501 5.1.7 Bad sender address syntax")
        c.send(b"RCPT TO:<" + b"\xff" * 5000 + b">\r\n")
        self.assertEqual(c.line(), "500 5.5.2 Line too long")
        c.send(b"NOOP\r\n")
        self.assertEqual(c.line(), "250 2.0.0 OK")
        c.send(b"\x00" * 100 + b"\r\n")
        self.assertEqual(c.line(), "500 5.5.2 Command unrecognized")
        for _ in range(14):
            c.send(b"\x01\x02\x03\r\n")
            self.assertEqual(c.line(), "500 5.5.2 Command unrecognized")
        c.send(b"\x7f\r\n")
        self.assertEqual(c.line(), "500 5.5.2 Command unrecognized")
        self.assertRegex(c.line(), r"^421 4\.7\.0 \S+ Too many errors, "
                         r"closing connection$")
        self.assertTrue(c.eof())
        c.close()
        wait_for("the reasons logged", lambda: count(
            log(), r"event=lmtp_disconnect .*reason=too_many_errors"))
        text = log()
        self.assertEqual(count(text, r"event=lmtp_protocol .*"
                               r"error=unknown_command"), 18)
        self.assertEqual(count(text, r"event=lmtp_protocol .*"
                               r"error=bad_path"), 1)
        self.assertEqual(count(text, r"event=lmtp_protocol .*"
                               r"error=line_too_long"), 1)
        self.assertEqual(count(text, r"event=lmtp_limit .*limit=errors"),
                         1)

        # Stalls: mid-line, and mid-message.
        line = Raw(self.engine.lmtp_port)
        line.send(b"MAIL FROM:<anne@exam")
        data = Raw(self.engine.lmtp_port)
        self.assertEqual(data.begin()[2][:4], "354 ")
        data.send(message("stalled@hostile")[:60])
        for c in (line, data):
            self.assertRegex(c.line(), r"^421 4\.4\.2 \S+ Timeout exceeded,"
                             r" closing connection$")
            self.assertTrue(c.eof())
            c.close()
        self.wait_sessions(1)
        text = log()
        self.assertEqual(count(text, r"event=lmtp_disconnect .*"
                               r"reason=idle_timeout"), 1)
        self.assertEqual(count(text, r"event=lmtp_disconnect .*"
                               r"reason=data_timeout"), 1)

        # 50 MB with no newline: as a command line, as a header line and
        # as a body line.  None of it is kept.
        sent = 0
        c = Raw(self.engine.lmtp_port)
        sent += c.flood(BIG, b"A")
        c.send(b"\r\nNOOP\r\n")
        self.assertEqual(c.line(), "500 5.5.2 Line too long")
        self.assertEqual(c.line(), "250 2.0.0 OK")
        self.assertEqual(c.begin()[2][:4], "354 ")
        c.send(b"X-Flood: ")
        sent += c.flood(BIG)
        c.send(b"\r\n\r\nbody\r\n.\r\n")
        # Over max-size too, which is what the reply names.
        self.assertEqual(c.line(),
                         "552 5.3.4 Message size exceeds fixed limit")
        self.assertEqual(c.begin()[2][:4], "354 ")
        c.send(b"X-Long: " + b"h" * 5000 + b"\r\n\r\nbody\r\n.\r\n")
        self.assertEqual(c.line(), "554 5.6.0 Message header line too long")
        self.assertEqual(c.begin()[2][:4], "354 ")
        c.send(message("flood@hostile", b""))
        sent += c.flood(BIG)
        c.send(b"\r\n.\r\n")
        self.assertEqual(c.line(),
                         "552 5.3.4 Message size exceeds fixed limit")
        c.send(b"NOOP\r\n")
        self.assertEqual(c.line(), "250 2.0.0 OK")
        c.close()
        figures["flood"] = (sent, self.lmtp_mem())
        self.assertEqual(sent, 3 * BIG)

        # Big messages from many clients at once: four fit the pool, the
        # next two are read, dropped and answered 452.  The pool is full
        # on purpose meanwhile, so the steady client waits: its message
        # would be dropped too.
        crowd = []
        with self.steady.lock:
            for i in range(6):
                c = Raw(self.engine.lmtp_port)
                self.assertEqual(c.begin()[2][:4], "354 ")
                c.send(message("crowd-%d@example.com" % i,
                               (b"c" * 78 + b"\n") * 11000))
                self.wait_read([c])
                crowd.append(c)
            figures["crowd"] = self.lmtp_mem()
            self.assertEqual(count(log(), r"event=lmtp_limit .*"
                                   r"limit=buffered"), 2)
            replies = []
            for c in crowd:
                c.send(b".\r\n")
                replies.append(c.line())
                c.close()
        self.assertEqual([re.sub(r"post \d+$", "post N", r)
                          for r in replies],
                         ["250 2.0.0 Queued as post N"] * 4 +
                         ["452 4.3.1 Insufficient system storage, "
                          "try again later"] * 2)
        crowd_ids = ["crowd-%d@example.com" % i for i in range(4)]

        # Clients that drop during DATA: at once, mid-header, mid-body,
        # and with the whole message but not its final dot.
        whole = message("drop-3@hostile", b"x" * 100000 + b"\n")
        cuts = [0, 30, 300, len(whole)]
        for i, cut in enumerate(cuts):
            c = Raw(self.engine.lmtp_port)
            self.assertEqual(c.begin()[2][:4], "354 ")
            c.send(message("drop-%d@hostile" % i,
                           b"x" * 100000 + b"\n")[:cut])
            self.wait_read([c])
            c.close()
        self.wait_sessions(1)

        # 500 connections at once, beyond --max-clients: the steady
        # client holds one slot, 99 more are served, the rest refused.
        with self.steady.lock:
            refused_before = count(log(), r"event=lmtp_refused ")
            crowd = [socket.create_connection(
                ("127.0.0.1", self.engine.lmtp_port), timeout=20)
                for _ in range(500)]
            greetings = [first_line(s) for s in crowd]
            served = [s for s, g in zip(crowd, greetings)
                      if g.startswith("220 ")]
            refused = [g for g in greetings
                       if re.match(r"421 4\.3\.2 \S+ Too many connections, "
                                   r"try again later\r\n$", g)]
            self.assertEqual(len(served), MAX_CLIENTS - 1)
            self.assertEqual(len(refused), 500 - MAX_CLIENTS + 1)
            # The well-behaved client is served all the same.
            during = self.steady.post()
            self.assertIsNotNone(during)
            figures["500"] = self.lmtp_mem()
            # The served ones were idle: each hears 421 and is closed.
            timed_out = 0
            for s in served:
                s.settimeout(IDLE * 10)
                data = b""
                while True:
                    chunk = s.recv(200)
                    if not chunk:
                        break
                    data += chunk
                if re.match(rb"421 4\.4\.2 \S+ Timeout exceeded", data):
                    timed_out += 1
            for s in crowd:
                s.close()
            self.assertEqual(timed_out, MAX_CLIENTS - 1)
            self.assertEqual(count(log(), r"event=lmtp_refused .*"
                                   r"reason=max_clients") - refused_before,
                             500 - MAX_CLIENTS + 1)
        fresh = LMTP(self.engine.lmtp_port)
        codes, replies = fresh.send("anne@example.com", [LIST],
                                    message("fresh@example.com"))
        fresh.close()
        self.assertEqual(codes, [250])
        self.assertTrue(replies[0].startswith("250 2.0.0 Queued"))

        self.steady.finish()
        self.assertEqual(self.steady.failures, [])
        self.assertIn(during, self.steady.accepted)
        good = self.steady.accepted + crowd_ids + ["fresh@example.com"]

        # Every accepted message once per member; nothing else.
        copies = self.wait_copies(3 * len(good))
        time.sleep(0.5)
        copies = self.sink.index()
        got = {}
        for c in copies:
            m = re.search(rb"(?im)^Message-ID:\s*<([^>]*)>",
                          self.sink.message(c))
            key = (m.group(1).decode() if m else None, c["rcpt"])
            got[key] = got.get(key, 0) + 1
        want = {(g, r): 1 for g in good for r in MEMBERS}
        self.assertEqual(got, want)
        for table in ("message", "post"):
            self.assertEqual(self.db.scalar(
                "SELECT count(*) FROM quire.%s" % table), str(len(good)))
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.post WHERE message_id_header "
            "LIKE '%hostile%'"), "0")
        wait_for("empty queues", lambda: self.db.scalar(
            "SELECT (SELECT count(*) FROM quire.queue) + "
            "(SELECT count(*) FROM quire.delivery)") == "0")
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log WHERE outcome = "
            "'sent'"), str(3 * len(good)))

        # Memory: what the options allow, beside what was used.
        end = self.lmtp_mem()
        # libpq's output buffer keeps up to twice the largest message
        # each database connection sent (it doubles, never shrinks).
        bound = (MAX_CLIENTS * CONN_BYTES + MAX_BUFFERED +
                 DB_CONNECTIONS * 2 * MAX_SIZE + SLACK)
        asan = sanitized(self.lmtp_pid)
        if asan:
            # The quarantine, the shadow (an eighth) and redzones.
            bound += ASAN_QUARANTINE + bound // 4
        grew = end["VmHWM"] - base["VmRSS"]
        print("\n  lmtp: %d refused, %d served of 500 at once; "
              "%d MB sent without a newline" % (
                  len(refused), len(served), sent // MIB))
        print("  lmtp: well-behaved posts %d accepted (%d while full), "
              "%d reconnects; crowd 4 accepted, 2 refused 452" % (
                  len(self.steady.accepted), 1, self.steady.reconnects))
        print("  lmtp worker: VmRSS %.1f MiB at start; VmHWM %.1f after "
              "50 MB floods, %.1f after the crowd, %.1f with 500 "
              "connections, %.1f at the end" % (
                  base["VmRSS"] / MIB, figures["flood"][1]["VmHWM"] / MIB,
                  figures["crowd"]["VmHWM"] / MIB,
                  figures["500"]["VmHWM"] / MIB, end["VmHWM"] / MIB))
        print("  lmtp bound: growth %.1f MiB <= %.1f MiB = %d clients x "
              "%d KiB + max-buffered %.2f MiB + %d db x 2 x max-size %d MiB"
              " + %d MiB slack%s" % (
                  grew / MIB, bound / MIB, MAX_CLIENTS, CONN_BYTES // KIB,
                  MAX_BUFFERED / MIB, DB_CONNECTIONS, MAX_SIZE // MIB,
                  SLACK // MIB, " + ASan" if asan else ""))
        print("  lmtp test: %.1f s" % (time.monotonic() - t0))
        self.assertLessEqual(grew, bound)
        self.assertIn("event=lmtp_limit", log())
        self.assertNotIn("event=lmtp_accept error=", log())


class LmtpFdLimitTest(EngineTest):
    """A hard limit too low for --max-clients: the worker says so and
    refuses with 421 past what fits, instead of stalling in accept()."""

    def test_max_clients_fit_to_open_files(self):
        raise_nofile(1024)
        self.make_list(LIST, MEMBERS)

        def low():
            resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))
        self.start_engine("--max-clients", "1000", preexec_fn=low)
        fit = 100 - DB_CONNECTIONS - 32
        line = wait_for("the open-files line", lambda: re.search(
            r"event=lmtp_limit .*limit=open_files open_files=100 "
            r"max_clients=(\d+) wanted=1000", self.engine.log_text()))
        self.assertEqual(int(line.group(1)), fit)
        crowd = [socket.create_connection(
            ("127.0.0.1", self.engine.lmtp_port), timeout=20)
            for _ in range(150)]
        greetings = [first_line(s)[:4] for s in crowd]
        self.assertEqual(greetings.count("220 "), fit)
        self.assertEqual(greetings.count("421 "), 150 - fit)
        for s in crowd:
            s.close()
        log = self.engine.log_text
        wait_for("the clients gone", lambda: count(
            log(), r"event=lmtp_connect ") == count(
            log(), r"event=lmtp_disconnect "))
        c = LMTP(self.engine.lmtp_port)
        codes, _ = c.send("anne@example.com", [LIST], message("fd@x"))
        c.close()
        self.assertEqual(codes, [250])
        self.wait_copies(3)
        print("\n  lmtp: open files 100 -> max-clients %d; 150 at once: "
              "%d served, %d refused" % (fit, fit, 150 - fit))
        self.assertNotIn("event=lmtp_accept error=", self.engine.log_text())


class HostileRelay(threading.Thread):
    """An SMTP relay on 127.0.0.1 whose manners are set by `mode`."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.mode = "garbage_greeting"
        self.seen = {}              # mode -> connections
        self.bytes_sent = 0         # of the 50 MB reply
        self.received = []          # good mode: (rcpt, Message-ID)
        self.stop = threading.Event()
        self.conns = []

    def run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            mode = self.mode
            self.seen[mode] = self.seen.get(mode, 0) + 1
            self.conns.append(conn)
            threading.Thread(target=self.serve, args=(conn, mode),
                             daemon=True).start()

    def finish(self):
        self.stop.set()
        self.join(5)
        self.sock.close()
        for c in self.conns:
            c.close()

    def serve(self, conn, mode):
        conn.settimeout(30)
        f = conn.makefile("rwb", buffering=0)
        try:
            self.dialogue(conn, f, mode)
        except OSError:
            pass
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drain(self, conn):
        """Read until the client gives up on us."""
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def flood(self, conn):
        """A reply line of BIG bytes, sent until the client hangs up."""
        chunk = b"x" * (64 * KIB)
        sent = 0
        try:
            conn.sendall(b"354 ")
            while sent < BIG:
                conn.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        self.bytes_sent = max(self.bytes_sent, sent)

    def dialogue(self, conn, f, mode):
        if mode == "garbage_greeting":
            conn.sendall(b"\x00\xff\xfe\x16\x03 not smtp\r\n")
            return self.drain(conn)
        conn.sendall(b"220 relay.test ESMTP\r\n")
        rcpts = []
        while True:
            line = f.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-relay.test\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                if mode == "garbage_reply":
                    conn.sendall(b"hello there \x01\x02\r\n")
                    return self.drain(conn)
                rcpts = []
                conn.sendall(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                if mode == "stall_reply":
                    conn.sendall(b"250-2.1.5 half a rep")
                    return self.drain(conn)
                rcpts.append(line[9:].strip().strip(b"<>").decode())
                conn.sendall(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                if mode == "huge_reply":
                    return self.flood(conn)
                if mode == "premature":
                    conn.sendall(b"354 go\r\n250 2.0.0 queued early\r\n")
                    return self.drain(conn)
                conn.sendall(b"354 go ahead\r\n")
                if mode == "drop_in_data":
                    conn.recv(10)
                    return
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = f.readline()
                    if not chunk:
                        return
                    data += chunk
                if mode == "no_final_reply":
                    return
                m = re.search(rb"(?im)^Message-ID:\s*<([^>]*)>", data)
                for r in rcpts:
                    self.received.append((r, m.group(1).decode()))
                conn.sendall(b"250 2.0.0 queued\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")


class SmtpHostileTest(EngineTest):
    engine_args = ("--smtp-timeout", "1", "--retry-base", "1",
                   "--retry-max", "1", "--out-connections", "2")
    # What the out worker records for each manner, per copy.
    MODES = [
        ("garbage_greeting",
         "protocol error: malformed reply waiting for greeting"),
        ("garbage_reply",
         "protocol error: malformed reply waiting for reply to MAIL"),
        ("stall_reply", "timeout waiting for reply to RCPT"),
        ("huge_reply",
         "protocol error: malformed reply waiting for reply to DATA"),
        ("drop_in_data",
         "connection closed by relay waiting for reply to end of data"),
        ("premature", "protocol error: reply to end of data before the "
         "data was sent: 250 2.0.0 queued early"),
        ("no_final_reply",
         "connection closed by relay waiting for reply to end of data"),
    ]

    def setUp(self):
        super().setUp()
        self.relay = HostileRelay()
        self.relay.start()

    def tearDown(self):
        self.relay.finish()
        super().tearDown()

    def deferred(self):
        return int(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log "
            "WHERE outcome = 'deferred'"))

    def test_hostile_relay(self):
        t0 = time.monotonic()
        self.make_list(LIST, MEMBERS)
        self.engine = Engine(self.db, self.relay.port, *self.engine_args)
        out_pid = wait_for("the out worker",
                           lambda: worker_pid(self.engine, "out"))
        base = proc_status(out_pid)
        c = LMTP(self.engine.lmtp_port)
        posts = ["relay-%d@example.com" % i for i in range(2)]
        for p in posts:
            codes, _ = c.send("anne@example.com", [LIST], message(p))
            self.assertEqual(codes, [250])
        c.close()
        for mode, reply in self.MODES:
            self.relay.mode = mode
            wait_for("a connection in mode " + mode,
                     lambda: self.relay.seen.get(mode, 0) > 0)
            before = self.deferred()
            # Two posts, three members: six copies deferred with the
            # reason, none sent, all still queued for a retry.
            wait_for("%s: every copy deferred" % mode, lambda: self.db.query(
                "SELECT DISTINCT last_reply FROM quire.delivery") == [
                    [reply]] and self.deferred() >= before + 6)
            self.assertEqual(self.db.scalar(
                "SELECT count(*) FROM quire.delivery_log "
                "WHERE outcome <> 'deferred'"), "0")
            self.assertEqual(self.db.scalar(
                "SELECT count(*) FROM quire.delivery "
                "WHERE state IN ('queued', 'leased')"), "6")
            self.assertEqual(self.relay.received, [])
            self.assertEqual(worker_pid(self.engine, "out"), out_pid)
        hwm = proc_status(out_pid)["VmHWM"]
        self.relay.mode = "good"
        wait_for("every copy at the relay",
                 lambda: len(self.relay.received) >= 6)
        wait_for("the delivery table empty", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.delivery") == "0")
        time.sleep(1.5)         # a copy sent twice would arrive by now
        self.assertEqual(sorted(self.relay.received),
                         sorted((m, p) for m in MEMBERS for p in posts))
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.delivery_log "
            "WHERE outcome = 'sent'"), "6")
        self.assertEqual(worker_pid(self.engine, "out"), out_pid)
        # The out worker holds, per connection, one reply of at most
        # SMTP_REPLY_MAX (64 KiB) plus a read chunk, and a copy of the
        # message; the message itself once.  Small messages here.
        bound = 2 * (64 * KIB + 64 * KIB + 16 * KIB) + 4 * MIB
        if sanitized(out_pid):
            # The default quarantine holds more than this test frees.
            bound += bound // 4 + 16 * MIB
        grew = hwm - base["VmRSS"]
        print("\n  relay: %d MB offered in one reply line, at most %d KiB "
              "sent before the client hung up; connections per manner %s"
              % (BIG // MIB, self.relay.bytes_sent // KIB,
                  ", ".join("%s=%d" % (m, self.relay.seen.get(m, 0))
                            for m, _ in self.MODES)))
        print("  out worker: VmRSS %.1f MiB at start, VmHWM %.1f after "
              "the hostile relay: growth %.2f MiB <= bound %.2f MiB" % (
                  base["VmRSS"] / MIB, hwm / MIB, grew / MIB, bound / MIB))
        print("  relay test: %.1f s" % (time.monotonic() - t0))
        self.assertLess(self.relay.bytes_sent, BIG)
        self.assertLessEqual(grew, bound)


if __name__ == "__main__":
    import unittest
    unittest.main()
