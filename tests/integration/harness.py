"""Integration harness: a real PostgreSQL cluster, the real quire binary,
the project's SMTP sink, and raw LMTP conversations over loopback.

The cluster is started once per test run by tools/check (QUIRE_TEST_PG
holds its conninfo without dbname); each test case gets a database of its
own, migrated by `quire migrate`.
"""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("QUIRE_BUILD", os.path.join(TOP, "build"))
QUIRE = os.path.join(BUILD, "bin", "quire")
SINK = os.path.join(BUILD, "bin", "quire-sink")
# Real messages nobody here wrote, beside the checkout (never copied in).
CORPUS = os.environ.get("QUIRE_CORPUS", os.path.join(
    os.path.dirname(TOP), "shared", "corpus"))
PG = os.environ.get("QUIRE_TEST_PG", "")
WAIT = float(os.environ.get("QUIRE_TEST_WAIT", "60"))

_db_counter = [0]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(what, predicate, timeout=WAIT, step=0.02):
    """Poll until predicate() is true; fail with `what` after timeout.
    A bound on waiting, not a timing assertion."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(step)


class Database:
    """A fresh database on the harness cluster."""

    def __init__(self, name=None):
        _db_counter[0] += 1
        self.name = name or "t%d_%d" % (os.getpid(), _db_counter[0])
        self.admin = PG + " dbname=postgres"
        self.psql(["-c", 'CREATE DATABASE "%s"' % self.name], self.admin)
        self.conninfo = PG + " dbname=" + self.name

    def psql(self, args, conninfo=None, input=None):
        out = subprocess.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-Atq",
             "-d", conninfo or self.conninfo] + args,
            input=input, capture_output=True, check=False)
        if out.returncode != 0:
            raise AssertionError("psql failed: %s" % out.stderr.decode())
        return out.stdout.decode()

    def query(self, sql, *params):
        """Rows of a query as lists of strings.  Parameters are bound by
        psql's own variables (:'v1'), never pasted into the SQL."""
        args = []
        for i, p in enumerate(params):
            args += ["-v", "v%d=%s" % (i + 1, p)]
        text = self.psql(args + ["-F", "\t"], input=sql.encode())
        return [line.split("\t") for line in text.splitlines() if line]

    def scalar(self, sql, *params):
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def drop(self):
        self.psql(["-c", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)'
                   % self.name], self.admin)


def quire(db, *args, check=True, input=None):
    out = subprocess.run([QUIRE, "--db", db.conninfo] + list(args),
                         capture_output=True, input=input)
    if check and out.returncode != 0:
        raise AssertionError("quire %s failed (%d): %s" % (
            " ".join(args), out.returncode, out.stderr.decode()))
    return out


def lmtp_greets(port):
    """True once an LMTP server on `port' answers with its greeting."""
    try:
        with socket.create_connection(("127.0.0.1", port),
                                      timeout=1) as s:
            return s.recv(100).startswith(b"220 ")
    except OSError:
        return False


class Sink:
    """The project's SMTP sink, writing each copy under a directory."""

    def __init__(self, *extra, port=0):
        self.dir = tempfile.mkdtemp(prefix="quire-sink-")
        self.proc = subprocess.Popen(
            [SINK, "--port", str(port), "--dir", self.dir] + list(extra),
            stdout=subprocess.PIPE, stderr=open(
                os.path.join(self.dir, "sink.log"), "wb"))
        line = self.proc.stdout.readline().decode()
        m = re.match(r"port=(\d+)", line)
        if not m:
            raise AssertionError("sink did not start: %r" % line)
        self.port = int(m.group(1))

    def index(self):
        path = os.path.join(self.dir, "index.tsv")
        if not os.path.exists(path):
            return []
        with open(path, "rb") as f:
            rows = [l.rstrip(b"\n").split(b"\t") for l in f if
                    l.endswith(b"\n")]
        return [{"seq": r[0].decode(), "mail_from": r[1].decode(),
                 "rcpt": r[2].decode(), "file": r[3].decode(),
                 "size": int(r[4])} for r in rows]

    def message(self, entry):
        with open(os.path.join(self.dir, entry["file"]), "rb") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


class Engine:
    """`quire run` with a private LMTP port, relaying to a sink."""

    def __init__(self, db, relay_port, *extra, stages=None,
                 preexec_fn=None):
        self.lmtp_port = free_port()
        self.log_path = tempfile.mktemp(prefix="quire-engine-",
                                        suffix=".log")
        args = [QUIRE, "--db", db.conninfo, "run",
                "--lmtp", "127.0.0.1:%d" % self.lmtp_port,
                "--relay", "127.0.0.1:%d" % relay_port]
        if stages:
            args += ["--stages", stages]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args + list(extra), stderr=self.log,
                                     preexec_fn=preexec_fn)
        if stages is None or "lmtp" in stages:
            wait_for("the LMTP greeting", self._greets, timeout=20)

    def _greets(self):
        return lmtp_greets(self.lmtp_port)

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class LMTPError(Exception):
    pass


class LMTP:
    """A raw LMTP client: the exact bytes given are sent (dot-stuffed)."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.buf = b""
        self.greeting = self.reply()
        self.command(b"LHLO test.example")

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise LMTPError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")

    def reply(self):
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return lines[-1][:3] and int(lines[-1][:3]), lines

    def command(self, data):
        self.sock.sendall(data + b"\r\n")
        return self.reply()

    def send(self, mail_from, rcpts, data):
        """One transaction; returns (rcpt codes, data replies)."""
        code, _ = self.command(b"MAIL FROM:<" + mail_from.encode() + b">")
        if code != 250:
            raise LMTPError("MAIL refused: %d" % code)
        rcpt_codes = []
        for r in rcpts:
            rcpt_codes.append(self.command(
                b"RCPT TO:<" + r.encode() + b">")[0])
        accepted = sum(1 for c in rcpt_codes if c == 250)
        if accepted == 0:
            self.command(b"RSET")
            return rcpt_codes, []
        code, _ = self.command(b"DATA")
        if code != 354:
            raise LMTPError("DATA refused: %d" % code)
        self.sock.sendall(dot_stuff(data) + b".\r\n")
        replies = [self.reply()[1][-1] for _ in range(accepted)]
        return rcpt_codes, replies

    def close(self):
        try:
            self.command(b"QUIT")
        except (OSError, LMTPError):
            pass
        self.sock.close()


def dot_stuff(data):
    if data and not data.endswith(b"\n"):
        data += b"\r\n"
    out = re.sub(rb"(?m)^\.", b"..", data)
    return out


def crlf(data):
    """What an MTA hands over LMTP: every line end CRLF."""
    return re.sub(rb"\r?\n|\r(?!\n)", b"\r\n", data)


def split_message(data):
    """(header block, body) at the first blank line."""
    m = re.search(rb"\r?\n\r?\n", data)
    if not m:
        return data, b""
    return data[:m.end()], data[m.end():]


def headers_of(block):
    """Unfolded (name, value) pairs of a header block, in order."""
    fields = []
    for line in re.split(rb"\r?\n", block):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += b" " + line.strip()
        elif b":" in line:
            name, value = line.split(b":", 1)
            fields.append([name.decode(errors="replace"), value.strip()])
    return [(n, v.decode(errors="replace")) for n, v in fields]


class EngineTest(unittest.TestCase):
    """A database, a sink and an engine for each test."""

    engine_args = ()
    sink_args = ()
    expect_worker_exits = False

    def setUp(self):
        if not PG:
            self.skipTest("QUIRE_TEST_PG is not set (run make check)")
        self.db = Database()
        quire(self.db, "migrate")
        self.sink = Sink(*self.sink_args)
        self.engine = None

    def start_engine(self, *extra, stages=None, preexec_fn=None):
        self.engine = Engine(self.db, self.sink.port,
                             *(tuple(self.engine_args) + extra),
                             stages=stages, preexec_fn=preexec_fn)
        return self.engine

    def tearDown(self):
        log = ""
        if self.engine is not None:
            self.engine.stop()
            log = self.engine.log_text()
            if self._outcome_failed() or os.environ.get("QUIRE_TEST_LOG"):
                print("---- engine log ----\n" + log)
        self.sink.stop()
        self.db.drop()
        # A sanitizer report or a crashed worker fails the test even when
        # the supervisor's restart let the rest of it pass.
        for bad in ("Sanitizer", "runtime error:", "event=worker_exited"):
            if bad in log and not self.expect_worker_exits:
                self.fail("engine log has %r:\n%s" % (bad, "\n".join(
                    l for l in log.splitlines() if bad in l)[:4000]))

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result is None:
            return False
        return any(t is self for t, _ in result.failures + result.errors)

    def make_list(self, fqdn, members=(), owners=()):
        host = fqdn.split("@")[1]
        if self.db.scalar("SELECT count(*) FROM quire.domain WHERE "
                          "mail_host = :'v1'", host) == "0":
            quire(self.db, "domain", "add", host)
        quire(self.db, "list", "create", fqdn)
        if members:
            quire(self.db, "member", "add", fqdn, *members)
        if owners:
            quire(self.db, "member", "add", fqdn, "--role", "owner",
                  *owners)

    def wait_copies(self, n):
        return wait_for("%d copies at the sink" % n,
                        lambda: len(self.sink.index()) >= n and
                        self.sink.index())
