#!/usr/bin/python3
"""make bench: Quire's benchmark table (called by tools/bench BUILD-DIR).

Everything runs on loopback against processes started here: a private
PostgreSQL cluster (fsync on, synchronous_commit on), the timestamping
sink of build/bin/quire-loadgen, the engine (`quire run`), and for the
ceilings pgbench on the same cluster and Postfix's smtp-sink (or
quire-sink in count mode).  Each measurement runs RUNS times and the
median is printed.  The bench never fails on a figure; it exits non-zero
only when something broke.  The table goes to stdout and BUILD/bench.txt;
per-run figures, the busiest statements and per-process numbers go to
BUILD/bench-detail.txt.

    BENCH_QUICK=1    about a minute (fewer posts, shorter windows)
    BENCH_CONNS=N    LMTP connections for posts/s (default 8)
    BENCH_KEEP=1     keep the temporary directory (logs, cluster)
    BENCH_SMTP_SINK=PATH   another smtp-sink (a missing one: quire-sink)
"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
CONNS = int(os.environ.get("BENCH_CONNS", "8"))
RUNS = 3
SMTP_SINK = os.environ.get("BENCH_SMTP_SINK", "/usr/sbin/smtp-sink")

# Per mode: (full, quick).
CFG = {
    "lat1_posts": (200, 60),
    "lat1000_posts": (20, 6),
    "tput_seconds": (6.0, 2.0),      # aimed length of a posts/s run
    "deliv_seconds": (4.0, 1.5),     # and of a deliveries/s run
    "idle_seconds": (10.0, 5.0),
    "pgbench_seconds": (4, 1),
    "sink_seconds": (1.0, 0.5),
    "startup_runs": (5, 3),
}


def cfg(name):
    return CFG[name][1 if QUICK else 0]


# Mailman 3 figures from the issue, printed for reference.
MAILMAN = {
    "lat1_p50": "2.0 s", "lat1000_p50": "4.1 s", "posts": "18.7",
    "deliv100": "384", "pss": "1.1 GiB", "wakeups": "10", "startup": "8 s",
}


class BenchError(Exception):
    pass


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def kv(text):
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def greets(port, timeout=1.0):
    try:
        with socket.create_connection(("127.0.0.1", port),
                                      timeout=timeout) as s:
            return s.recv(100).startswith(b"220")
    except OSError:
        return False


def wait_greeting(port, what, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if greets(port):
            return
        time.sleep(0.01)
    raise BenchError("no greeting from %s on port %d" % (what, port))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# /proc: Quire's processes, their memory and their wake-ups.

def children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        if os.path.exists("/proc/%d" % p):
            pids.append(p)
            todo += children(p)
    return pids


def pss_kb(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def proc_name(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode().strip()[:60]
    except OSError:
        return "?"


def switches(pids):
    """Context switches (voluntary + involuntary) of every thread."""
    per = {}
    for p in pids:
        n = 0
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/status" % (p, tid)) as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches",
                                            "nonvoluntary_ctxt_switches")):
                            n += int(line.split()[1])
        except OSError:
            continue
        per[p] = n
    return per


def cpu_ticks(pids):
    per = {}
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            per[p] = int(fields[11]) + int(fields[12])    # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return per


class Bench:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.bin = os.path.join(self.build, "bin")
        self.quire = os.path.join(self.bin, "quire")
        self.loadgen = os.path.join(self.bin, "quire-loadgen")
        self.qsink = os.path.join(self.bin, "quire-sink")
        for b in (self.quire, self.loadgen, self.qsink):
            if not os.access(b, os.X_OK):
                raise BenchError("%s is missing (make all)" % b)
        self.work = tempfile.mkdtemp(prefix="quire-bench-")
        os.chmod(self.work, 0o755)
        self.procs = []         # (name, Popen) we started, to end
        self.pg_dir = os.path.join(self.work, "pg")
        self.pg_started = False
        self.res = {}           # figures for the table
        self.detail = []        # lines for bench-detail.txt
        self.engine = None
        self.tag_seq = 0

    # Processes.

    def spawn(self, name, args, **kw):
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", open(os.path.join(
            self.work, name + ".log"), "ab"))
        p = subprocess.Popen(args, **kw)
        self.procs.append((name, p))
        return p

    def end(self, p, timeout=20):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def cleanup(self):
        for _, p in list(self.procs):
            self.end(p)
        if self.pg_started:
            subprocess.run([os.path.join(TOP, "tools", "pg"), "stop",
                            self.pg_dir], capture_output=True)
        if os.environ.get("BENCH_KEEP"):
            log("kept " + self.work)
            return
        real = os.path.realpath(self.pg_dir)
        shutil.rmtree(self.work, ignore_errors=True)
        if real != self.pg_dir and real.startswith("/var/tmp/quire-pg-"):
            shutil.rmtree(real, ignore_errors=True)

    # The database.

    def start_cluster(self):
        env = dict(os.environ)
        env["QUIRE_PG_EXTRA"] = "\n".join([
            "fsync = on",
            "synchronous_commit = on",
            "shared_preload_libraries = 'pg_stat_statements'",
            "pg_stat_statements.track = all",
            "pg_stat_statements.track_planning = on",
            "track_functions = 'pl'",
        ])
        out = subprocess.run([os.path.join(TOP, "tools", "pg"), "start",
                              self.pg_dir], capture_output=True, env=env)
        self.pg_started = True
        if out.returncode != 0:
            raise BenchError("tools/pg start: " + out.stderr.decode())
        self.conninfo = out.stdout.decode().strip().splitlines()[-1]
        self.pg_bin = sorted(
            [os.path.join("/usr/lib/postgresql", v, "bin") for v in
             os.listdir("/usr/lib/postgresql")],
            key=lambda p: [int(x) for x in p.split("/")[-2].split(".")
                           if x.isdigit()])[-1]
        self.psql_admin("CREATE DATABASE ceiling")
        self.version = self.sql("SHOW server_version")
        self.settings = self.sql(
            "SELECT 'fsync=' || current_setting('fsync') ||"
            " ' synchronous_commit=' || current_setting('synchronous_commit')"
            " || ' wal_sync_method=' || current_setting('wal_sync_method') ||"
            " ' shared_buffers=' || current_setting('shared_buffers')")

    def db(self, name="quire"):
        return self.conninfo.replace("dbname=quire", "dbname=" + name)

    def sql(self, query, dbname="quire", check=True):
        out = subprocess.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-Atq", "-F", "\t",
             "-d", self.db(dbname), "-c", query], capture_output=True)
        if check and out.returncode != 0:
            raise BenchError("psql: %s: %s" % (query[:60],
                                               out.stderr.decode()))
        return out.stdout.decode().strip()

    def psql_admin(self, query):
        return self.sql(query, dbname="postgres")

    def run_quire(self, *args):
        out = subprocess.run([self.quire, "--db", self.conninfo] +
                             list(args), capture_output=True)
        if out.returncode != 0:
            raise BenchError("quire %s: %s" % (" ".join(args),
                                               out.stderr.decode()))
        return out.stdout.decode()

    def setup_lists(self):
        self.run_quire("migrate")
        self.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.run_quire("domain", "add", "bench.example")
        for n in (1, 100, 1000):
            name = "l%d@bench.example" % n
            self.run_quire("list", "create", name)
            path = os.path.join(self.work, "members%d.txt" % n)
            with open(path, "w") as f:
                for i in range(n):
                    f.write("m%04d@d%d.example\n" % (i, i % 10))
            self.run_quire("member", "add", name, "--file", path)
            # The poster is no member; accept its posts without holding.
            self.run_quire("list", "set", name, "default_nonmember_action",
                           "accept")

    # WAL: commits and rows written, exactly and at once (the statistics
    # views lag by up to 10 s behind an idle backend).

    def wal_lsn(self):
        return self.sql("SELECT pg_current_wal_insert_lsn()")

    def relmap(self):
        rows = self.sql(
            "SELECT c.relfilenode, n.nspname || '.' || c.relname, c.relkind"
            "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relfilenode <> 0 AND n.nspname NOT IN"
            " ('pg_catalog', 'information_schema')", dbname=self.wal_db)
        out = {}
        for line in rows.splitlines():
            node, name, kind = line.split("\t")
            out[node] = (name, kind)
        return out

    def wal_stats(self, start, end, dbname):
        """Commits and row changes (non-TOAST heap records) in [start,
        end), and the WAL bytes."""
        self.wal_db = dbname
        rels = self.relmap()
        waldump = os.path.join(self.pg_bin, "pg_waldump")
        out = subprocess.run(
            [waldump, "-p", os.path.join(self.pg_dir, "data", "pg_wal"),
             "-s", start, "-e", end], capture_output=True)
        st = {"commits": 0, "insert": 0, "update": 0, "delete": 0,
              "lock": 0, "toast": 0, "fpi": 0, "by_table": {}}
        for line in out.stdout.decode(errors="replace").splitlines():
            if "rmgr: Transaction" in line and "desc: COMMIT" in line:
                st["commits"] += 1
                continue
            if "FPW" in line or "FPI" in line:
                st["fpi"] += 1
            if not (line.startswith("rmgr: Heap ") or
                    line.startswith("rmgr: Heap2 ")):
                continue
            desc = line.split("desc: ", 1)[1] if "desc: " in line else ""
            op = desc.split()[0] if desc else ""
            n = 1
            if op.startswith("MULTI_INSERT"):
                try:
                    n = int(desc.split("ntuples:")[1].split()[0].strip(","))
                except (IndexError, ValueError):
                    n = 1
                kind = "insert"
            elif op.startswith("INSERT"):
                kind = "insert"
            elif op in ("UPDATE", "HOT_UPDATE") or op.startswith(
                    ("UPDATE", "HOT_UPDATE")):
                kind = "update"
            elif op.startswith("DELETE"):
                kind = "delete"
            elif op.startswith("LOCK"):
                kind = "lock"
            else:
                continue
            node = None
            if "rel " in line:
                node = line.split("rel ", 1)[1].split()[0].split("/")[-1]
            name, relkind = rels.get(node, ("other", "?"))
            if relkind == "t":
                st["toast"] += n
                continue
            if name == "other":
                continue        # catalogs, autovacuum's analyze
            st[kind] += n
            key = "%s %s" % (kind, name)
            st["by_table"][key] = st["by_table"].get(key, 0) + n
        try:
            a = [int(x, 16) for x in start.split("/")]
            b = [int(x, 16) for x in end.split("/")]
            st["bytes"] = ((b[0] << 32) + b[1]) - ((a[0] << 32) + a[1])
        except ValueError:
            st["bytes"] = 0
        return st

    # Sinks.

    def start_tsink(self):
        self.events = os.path.join(self.work, "events.txt")
        p = self.spawn("tsink", [self.loadgen, "sink", "--events",
                                 self.events], stdout=subprocess.PIPE)
        line = p.stdout.readline().decode()
        if not line.startswith("port="):
            raise BenchError("the bench sink did not start: %r" % line)
        self.tsink = p
        self.tsink_port = int(line.split("=")[1])

    def start_ceiling_sink(self):
        """smtp-sink, or quire-sink in count mode when it is missing."""
        if os.access(SMTP_SINK, os.X_OK):
            port = free_port()
            user = "postfix"
            try:
                import pwd
                pwd.getpwnam(user)
            except KeyError:
                user = "nobody"
            args = [SMTP_SINK, "-4", "-a", "-m", "1024"]
            if os.getuid() == 0:
                args += ["-u", user]
            p = self.spawn("smtp-sink", args + ["127.0.0.1:%d" % port,
                                                "1024"])
            wait_greeting(port, "smtp-sink", 10)
            return "smtp-sink", p, port
        p = self.spawn("quire-sink-count", [self.qsink, "--port", "0"],
                       stdout=subprocess.PIPE)
        line = p.stdout.readline().decode()
        if not line.startswith("port="):
            raise BenchError("quire-sink did not start: %r" % line)
        return "quire-sink", p, int(line.split("=")[1])

    def sink_rate(self, port, rcpts, conns=2):
        """The sink's rate; a sink that fails is reported, not fatal."""
        out = subprocess.run(
            [self.loadgen, "smtp", "--port", str(port), "--rcpts",
             str(rcpts), "--conns", str(conns), "--seconds",
             str(cfg("sink_seconds"))], capture_output=True, timeout=120)
        if out.returncode != 0:
            log("warning: sink rate on port %d failed: %s" % (
                port, out.stderr.decode().strip()))
            return {}
        return kv(out.stdout.decode())

    # Ceilings.

    def ceilings(self):
        log("ceilings: pgbench on the same cluster")
        blob = self.sample_message()
        self.sql("CREATE TABLE blob (raw bytea NOT NULL);"
                 "CREATE TABLE message (id bigserial PRIMARY KEY,"
                 " raw bytea NOT NULL, size integer NOT NULL,"
                 " created_at timestamptz NOT NULL DEFAULT now());"
                 "CREATE TABLE queue (id bigserial PRIMARY KEY,"
                 " message_id bigint NOT NULL, stage text NOT NULL"
                 " DEFAULT 'in', not_before timestamptz NOT NULL"
                 " DEFAULT now())", dbname="ceiling")
        # A psql variable, bound by psql's quoting, not pasted in.
        out = subprocess.run(
            ["psql", "-X", "-q", "-d", self.db("ceiling"), "-v",
             "ON_ERROR_STOP=1", "-v", "b=" + blob],
            input=b"INSERT INTO blob VALUES (convert_to(:'b', 'UTF8'));\n",
            capture_output=True)
        if out.returncode != 0:
            raise BenchError("psql: the ceiling's blob: " +
                             out.stderr.decode())
        script = os.path.join(self.work, "commit.sql")
        with open(script, "w") as f:
            f.write("BEGIN;\n"
                    "INSERT INTO message (raw, size)"
                    " SELECT raw, length(raw) FROM blob;\n"
                    "INSERT INTO queue (message_id)"
                    " VALUES (currval('message_id_seq'));\n"
                    "END;\n")
        runs1, runsc = [], []
        for r in range(RUNS):
            wal0 = self.wal_lsn()
            runs1.append(self.pgbench(script, 1, "c1_%d" % r))
            if r == 0:
                self.res["ceil_wal"] = self.wal_stats(
                    wal0, self.wal_lsn(), "ceiling")
                self.res["ceil_wal"]["txns"] = runs1[0]["txns"]
            runsc.append(self.pgbench(script, CONNS, "cn_%d" % r))
        self.res["pgb1"] = {k: median([x[k] for x in runs1])
                            for k in runs1[0]}
        self.res["pgbc"] = {k: median([x[k] for x in runsc])
                            for k in runsc[0]}
        for r, x in enumerate(runs1):
            self.detail.append("pgbench -c 1 run %d: %.0f tps, p50 %.3f ms,"
                               " p99 %.3f ms" % (r + 1, x["tps"], x["p50"],
                                                 x["p99"]))
        for r, x in enumerate(runsc):
            self.detail.append("pgbench -c %d run %d: %.0f tps, p50 %.3f ms"
                               ", p99 %.3f ms" % (CONNS, r + 1, x["tps"],
                                                  x["p50"], x["p99"]))

        name, p, port = self.start_ceiling_sink()
        self.res["sink_name"] = name
        log("ceilings: %s driven by quire-loadgen smtp" % name)
        for rcpts in (1, 100, 500):
            rates = [self.sink_rate(port, rcpts) for _ in range(RUNS)]
            self.res["sink_%d" % rcpts] = (
                median([float(x["message_rate"]) for x in rates
                        if "message_rate" in x]),
                median([float(x["delivery_rate"]) for x in rates
                        if "delivery_rate" in x]))
            self.detail.append("%s, %d rcpt(s) a message, 2 connections: %s"
                               " messages/s" % (name, rcpts, ", ".join(
                                   x.get("message_rate", "?")
                                   for x in rates)))
        self.end(p)
        for rcpts in (1, 500):
            rates = [self.sink_rate(self.tsink_port, rcpts)
                     for _ in range(RUNS)]
            self.res["tsink_%d" % rcpts] = (
                median([float(x["message_rate"]) for x in rates
                        if "message_rate" in x]),
                median([float(x["delivery_rate"]) for x in rates
                        if "delivery_rate" in x]))
        # The sink's own event lines are no posts of ours; skip them.

    def sample_message(self):
        words = ("list engine queue commit member digest archive "
                 "moderation bounce delivery header subject the a of to "
                 "and in is it that for on with as").split()
        lines, x = [], 12345
        text = ("From: Bench Poster <poster@sender.example>\r\n"
                "To: l1@bench.example\r\nSubject: bench post\r\n"
                "Message-ID: <0.ceiling@loadgen.invalid>\r\n\r\n")
        while len(text) + sum(len(l) + 2 for l in lines) < 4096:
            line = []
            while len(" ".join(line)) < 66:
                x = (x * 1103515245 + 12345) & 0x7fffffff
                line.append(words[x % len(words)])
            lines.append(" ".join(line))
        return text + "\r\n".join(lines) + "\r\n"

    def pgbench(self, script, clients, tag):
        prefix = os.path.join(self.work, "pgb_" + tag)
        args = [os.path.join(self.pg_bin, "pgbench"), "-n", "-f", script,
                "-c", str(clients), "-j", str(min(clients,
                                                  os.cpu_count() or 1)),
                "-T", str(cfg("pgbench_seconds")), "-l",
                "--log-prefix=" + prefix, self.db("ceiling")]
        out = subprocess.run(args, capture_output=True, cwd=self.work)
        if out.returncode != 0:
            raise BenchError("pgbench: " + out.stderr.decode())
        tps = txns = 0
        for line in out.stdout.decode().splitlines():
            if line.startswith("tps = "):
                tps = float(line.split()[2])
            if "number of transactions actually processed" in line:
                txns = int(line.split(":")[1].split("/")[0])
        lat = []
        d = os.path.dirname(prefix)
        for fn in os.listdir(d):
            if fn.startswith(os.path.basename(prefix) + "."):
                with open(os.path.join(d, fn)) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 3:
                            lat.append(int(parts[2]) / 1000.0)
                os.unlink(os.path.join(d, fn))
        lat.sort()

        def pct(p):
            if not lat:
                return None
            return lat[min(len(lat) - 1, max(0, int(p / 100 * len(lat)
                                                    + 0.999999) - 1))]
        return {"tps": tps, "txns": txns, "p50": pct(50), "p99": pct(99)}

    # Start-up.

    def startup(self):
        log("start-up: exec of quire run to the first LMTP greeting")
        times = []
        for _ in range(cfg("startup_runs")):
            port = free_port()
            out = subprocess.run(
                [self.loadgen, "greet", "--port", str(port), "--",
                 self.quire, "--db", self.conninfo, "run", "--lmtp",
                 "127.0.0.1:%d" % port, "--relay",
                 "127.0.0.1:%d" % self.tsink_port], capture_output=True,
                timeout=60)
            if out.returncode != 0:
                raise BenchError("greet: " + out.stderr.decode()[-400:])
            times.append(float(kv(out.stdout.decode())["greet_ms"]))
        self.res["startup"] = median(times)
        self.detail.append("start-up runs (ms): " + ", ".join(
            "%.1f" % t for t in times))
        # The same measure for a small C event-loop server: the bench's
        # own sink.
        times = []
        for _ in range(cfg("startup_runs")):
            port = free_port()
            out = subprocess.run(
                [self.loadgen, "greet", "--port", str(port), "--",
                 self.loadgen, "sink", "--port", str(port)],
                capture_output=True, timeout=60)
            if out.returncode == 0:
                times.append(float(kv(out.stdout.decode())["greet_ms"]))
        self.res["startup_ref"] = median(times)

    # The engine.

    def start_engine(self):
        self.lmtp_port = free_port()
        self.engine_log = os.path.join(self.work, "engine.log")
        self.engine = self.spawn(
            "engine", [self.quire, "--db", self.conninfo, "run", "--lmtp",
                       "127.0.0.1:%d" % self.lmtp_port, "--relay",
                       "127.0.0.1:%d" % self.tsink_port],
            stderr=open(self.engine_log, "ab"))
        wait_greeting(self.lmtp_port, "quire run")
        deadline = time.monotonic() + 10
        while len(tree(self.engine.pid)) < 4 and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        # Each worker says it is ready once its connection is up.
        while time.monotonic() < deadline:
            with open(self.engine_log, "rb") as f:
                text = f.read()
            if text.count(b"runner_ready") >= 2:
                break
            time.sleep(0.05)

    def quire_pids(self):
        return tree(self.engine.pid)

    def role(self, pid):
        """supervisor, or the worker named in the engine's log."""
        if self.engine is not None and pid == self.engine.pid:
            return "supervisor"
        try:
            with open(self.engine_log, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        for line in text.splitlines():
            if "event=worker_started" in line and \
                    "worker_pid=%d" % pid in line:
                return line.split("worker=", 1)[1].split()[0]
        return proc_name(pid)

    def backend_pids(self):
        """Quire's PostgreSQL backends: pid -> the worker they serve."""
        rows = self.sql("SELECT pid, application_name FROM pg_stat_activity"
                        " WHERE application_name LIKE 'quire/%'")
        out = {}
        for line in rows.splitlines():
            pid, app = line.split("\t")
            out[int(pid)] = "backend of " + app.split("/")[-1]
        return out

    def cluster_pids(self):
        try:
            with open(os.path.join(self.pg_dir, "data",
                                   "postmaster.pid")) as f:
                return tree(int(f.readline()))
        except (OSError, ValueError):
            return []

    def lmtp(self, to, count, copies, serial=False, conns=1, gap_ms=0,
             timeout=120, logname=None, stall_ms=5000):
        self.tag_seq += 1
        tag = "b%d" % self.tag_seq
        args = [self.loadgen, "lmtp", "--port", str(self.lmtp_port),
                "--to", to, "--count", str(count), "--tag", tag,
                "--events", self.events, "--copies", str(copies),
                "--timeout", str(timeout), "--conns", str(conns),
                "--stall-ms", str(stall_ms)]
        if serial:
            args += ["--serial", "--gap-ms", str(gap_ms)]
        if logname:
            args += ["--log", os.path.join(self.work, logname)]
        out = subprocess.run(args, capture_output=True, timeout=timeout + 60)
        res = kv(out.stdout.decode())
        if out.returncode not in (0, 3) or "posts" not in res:
            raise BenchError("loadgen lmtp: " + out.stderr.decode()[-400:])
        if out.returncode == 3 or res.get("stalled", "0") != "0":
            log("warning: %s: %s of %s posts complete (%s copies of %s), "
                "%s stalled over %d ms%s" % (
                    to, res.get("complete"), count, res.get("copies"),
                    res.get("copies_expected"), res.get("stalled"),
                    stall_ms, "; last error: " + res["last_error"]
                    if "last_error" in res else ""))
        return res

    def latency(self):
        log("latency: LMTP 250 to the sink's receipt, one post at a time")
        self.lmtp("l1@bench.example", 20, 1, serial=True, gap_ms=5)
        self.lmtp("l1000@bench.example", 2, 1000, serial=True, gap_ms=20)
        for key, to, posts, copies, gap, stall in (
                ("lat1", "l1@bench.example", cfg("lat1_posts"), 1, 10, 1000),
                ("lat1000", "l1000@bench.example", cfg("lat1000_posts"),
                 1000, 50, 3000)):
            runs = []
            for r in range(RUNS):
                last = key == "lat1" and r == RUNS - 1
                if last:
                    self.sql("SELECT pg_stat_statements_reset()")
                runs.append(self.lmtp(to, posts, copies, serial=True,
                                      gap_ms=gap, stall_ms=stall,
                                      logname="%s_%d.tsv" % (key, r)))
                if last:
                    self.res["stmts_lat1"] = self.statements(
                        int(runs[-1]["accepted"]))
            self.res[key] = runs
            for r, x in enumerate(runs):
                self.detail.append(
                    "%s run %d: %s posts, %s stalled, latency p50 %s p90 %s "
                    "p99 %s max %s ms; LMTP dot to 250 p50 %s p99 %s ms" % (
                        key, r + 1, x.get("latency_n"), x.get("stalled"),
                        x.get("latency_p50_ms"), x.get("latency_p90_ms"),
                        x.get("latency_p99_ms"), x.get("latency_max_ms"),
                        x.get("commit_p50_ms"), x.get("commit_p99_ms")))

    def sized(self, to, copies, seconds, conns, first, lo, hi):
        """Posts for a run of about `seconds`, from a first short run."""
        x = self.lmtp(to, first, copies, conns=conns)
        rate = float(x.get("e2e_post_rate", 0) or 0)
        return max(lo, min(hi, int(rate * seconds))), x

    def sample_load(self, stop, out, backlog):
        """PSS every 0.2 s; the queues' depths every 0.5 s."""
        n = 0
        while not stop.is_set():
            out.append(pss_kb(self.quire_pids()))
            if n % 3 == 0:
                rows = self.sql(
                    "SELECT stage, count(*) FROM quire.queue GROUP BY 1"
                    " UNION ALL SELECT 'out (deliveries ' || state || ')',"
                    " count(*) FROM quire.delivery GROUP BY state",
                    check=False)
                for line in rows.splitlines():
                    stage, count = line.split("\t")
                    backlog[stage] = max(backlog.get(stage, 0), int(count))
            n += 1
            stop.wait(0.2)

    def throughput(self):
        log("posts/s: back to back to the 1-member list over %d LMTP "
            "connections" % CONNS)
        n, _ = self.sized("l1@bench.example", 1, cfg("tput_seconds"), CONNS,
                          200, 200, 20000)
        runs, pss, backlog = [], [], {}
        pids = self.quire_pids()
        names = {p: self.role(p) for p in pids}
        backends = self.backend_pids()
        names.update(backends)
        pids = pids + list(backends)
        cpu0 = cpu_ticks(pids)
        for r in range(RUNS):
            stop = threading.Event()
            t = threading.Thread(target=self.sample_load,
                                 args=(stop, pss, backlog))
            t.start()
            if r == RUNS - 1:
                wal0 = self.wal_lsn()
                self.sql("SELECT pg_stat_statements_reset()")
            try:
                runs.append(self.lmtp("l1@bench.example", n, 1, conns=CONNS,
                                      logname="tput_%d.tsv" % r))
            finally:
                stop.set()
                t.join()
            if r == RUNS - 1:
                time.sleep(0.5)     # async commits reach the WAL files
                self.res["wal_tput"] = self.wal_stats(wal0, self.wal_lsn(),
                                                      "quire")
                self.res["wal_tput"]["posts"] = int(runs[-1]["accepted"])
                self.res["stmts_tput"] = self.statements(
                    int(runs[-1]["accepted"]))
        cpu1 = cpu_ticks(pids)
        posts = sum(int(x["accepted"]) for x in runs)
        hz = os.sysconf("SC_CLK_TCK")
        self.res["cpu_per_post"] = {
            "%s (%d)" % (names[p], p): (cpu1.get(p, 0) - cpu0.get(p, 0)) /
            hz * 1e3 / max(posts, 1) for p in pids}
        self.res["cpu_seconds"] = sum(float(x.get("e2e_s", 0))
                                      for x in runs)
        self.res["tput"] = runs
        self.res["backlog"] = backlog
        self.res["pss_load"] = max(pss) if pss else None
        for r, x in enumerate(runs):
            self.detail.append(
                "posts/s run %d: %s posts (%s incomplete), accepted at "
                "%s/s, end to end %s/s; LMTP dot to 250 p50 %s p99 %s ms; "
                "250 to copy p50 %s p99 %s ms" % (r + 1, x.get("accepted"),
                                  x.get("stalled"),
                                  x.get("accept_rate"),
                                  x.get("e2e_post_rate"),
                                  x.get("commit_p50_ms"),
                                  x.get("commit_p99_ms"),
                                  x.get("latency_p50_ms"),
                                  x.get("latency_p99_ms")))

    def deliveries(self):
        for members in (100, 1000):
            log("deliveries/s: back to back to the %d-member list" %
                members)
            to = "l%d@bench.example" % members
            n, _ = self.sized(to, members, cfg("deliv_seconds"), 1,
                              max(2, 2000 // members), 2, 2000)
            runs = []
            for r in range(RUNS):
                if members == 1000 and r == RUNS - 1:
                    wal0 = self.wal_lsn()
                runs.append(self.lmtp(to, n, members))
                if members == 1000 and r == RUNS - 1:
                    time.sleep(0.5)
                    self.res["wal_1000"] = self.wal_stats(
                        wal0, self.wal_lsn(), "quire")
                    self.res["wal_1000"]["posts"] = int(runs[-1]["accepted"])
            self.res["deliv%d" % members] = runs
            for r, x in enumerate(runs):
                self.detail.append(
                    "deliveries/s %d members run %d: %s posts (%s "
                    "incomplete), %s copies, %s deliveries/s" % (
                        members, r + 1, x.get("accepted"), x.get("stalled"),
                                         x.get("copies"),
                                         x.get("delivery_rate")))

    def statements(self, posts):
        rows = self.sql(
            "SELECT calls, round(total_exec_time::numeric, 3),"
            " round(total_plan_time::numeric, 3), rows,"
            " toplevel, regexp_replace(query, '\\s+', ' ', 'g')"
            "  FROM pg_stat_statements s JOIN pg_database d"
            "    ON d.oid = s.dbid AND d.datname = 'quire'"
            " WHERE query NOT LIKE '%pg_stat_statements%'"
            # the bench's own queries
            "   AND query NOT LIKE 'SELECT stage, count(*) FROM quire.queue%'"
            "   AND query NOT LIKE 'SELECT pg_current_wal_insert_lsn()%'"
            "   AND query NOT LIKE 'SELECT pid, application_name FROM%'"
            " ORDER BY total_exec_time + total_plan_time DESC")
        top, calls_top, exec_top, plan_top = [], 0, 0.0, 0.0
        for line in rows.splitlines():
            calls, ms, plan, nrows, toplevel, query = line.split("\t", 5)
            if toplevel == "t":
                calls_top += int(calls)
                exec_top += float(ms)
                plan_top += float(plan)
            top.append((float(ms), float(plan), int(calls), int(nrows),
                        toplevel == "t", query))
        n = max(posts, 1)
        return {"per_post": calls_top / n, "top": top[:25], "posts": posts,
                "exec_ms": exec_top / n, "plan_ms": plan_top / n}

    def idle(self):
        log("idle: wake-ups and memory over %.0f s" % cfg("idle_seconds"))
        time.sleep(2)
        pids = self.quire_pids()
        backends = list(self.backend_pids())
        cluster = self.cluster_pids()
        s0 = switches(pids)
        b0 = switches(backends)
        c0 = switches(cluster)
        t0 = time.monotonic()
        time.sleep(cfg("idle_seconds"))
        dt = time.monotonic() - t0
        s1 = switches(pids)
        b1 = switches(backends)
        c1 = switches(cluster)
        per = {p: (s1.get(p, 0) - s0.get(p, 0)) / dt for p in s0}
        self.res["wakeups"] = sum(per.values())
        self.res["wakeups_per"] = {"%s (%d)" % (self.role(p), p): w
                                   for p, w in per.items()}
        self.res["wakeups_backends"] = sum(
            (b1.get(p, 0) - b0.get(p, 0)) for p in b0) / dt
        self.res["wakeups_cluster"] = sum(
            (c1.get(p, 0) - c0.get(p, 0)) for p in c0) / dt
        self.res["pss_idle_after"] = pss_kb(pids)
        self.res["pss_per"] = {"%s (%d)" % (self.role(p), p): pss_kb([p])
                               for p in pids}

    # The table.

    def table(self):
        r = self.res

        def ms(v):
            if v is None:
                return "n/a"
            return "%.1f ms" % v if v < 100 else "%.0f ms" % v

        def rate(v):
            return "n/a" if v is None else "%.0f" % v

        def mb(kb):
            return "n/a" if kb is None else "%.1f MB" % (kb / 1024.0)

        def med(runs, key):
            return median([float(x[key]) for x in runs if key in x])

        sink = r.get("sink_name", "sink")
        s1, s100, s500 = r["sink_1"], r["sink_100"], r["sink_500"]
        pg1, pgc = r["pgb1"], r["pgbc"]
        # The floor of one hop: a durable commit of the pattern, then one
        # sink transaction (2 connections share the sink's rate).
        sink_txn1 = 2000.0 / s1[0] if s1[0] else 0
        sink_txn500 = 2000.0 / s500[0] if s500[0] else 0
        rows = []
        lat1, lat1000 = r["lat1"], r["lat1000"]
        rows.append(("LMTP 250 -> SMTP hand-off, 1 member, p50",
                     ms(med(lat1, "latency_p50_ms")),
                     "%s (commit p50 %s + %s txn)" % (
                         ms(pg1["p50"] + sink_txn1), ms(pg1["p50"]),
                         sink),
                     MAILMAN["lat1_p50"], "< 3 ms"))
        rows.append(("  p99", ms(med(lat1, "latency_p99_ms")),
                     "%s (commit p99 %s + %s txn)" % (
                         ms(pg1["p99"] + sink_txn1), ms(pg1["p99"]),
                         sink), "", "< 20 ms"))
        rows.append(("  1000 members, last copy, p50",
                     ms(med(lat1000, "latency_p50_ms")),
                     "%s (commit + 2x500-rcpt txn on 2 conns)" % ms(
                         pg1["p50"] + sink_txn500),
                     MAILMAN["lat1000_p50"], ""))
        rows.append(("  1000 members, last copy, p99",
                     ms(med(lat1000, "latency_p99_ms")),
                     ms(pg1["p99"] + sink_txn500), "", ""))
        def stalled(runs):
            return sum(int(x.get("stalled", 0)) for x in runs), sum(
                int(x.get("posts", 0)) for x in runs)
        st1, n1 = stalled(lat1)
        st1000, n1000 = stalled(lat1000)
        stl, nl = stalled(r["tput"] + r["deliv100"] + r["deliv1000"])
        rows.append(("  posts stalled (copy > 1 s / 3 s late; load runs)",
                     "%d of %d / %d of %d; %d of %d" % (
                         st1, n1, st1000, n1000, stl, nl), "0", "", "0"))
        tput = r["tput"]
        ceil_posts = min(pgc["tps"], s1[0]) if s1[0] else pgc["tps"]
        rows.append(("posts/s back to back, 1 member (end to end)",
                     rate(med(tput, "e2e_post_rate")),
                     "%s (min of pgbench -c %d %s, %s %s msg/s)" % (
                         rate(ceil_posts), CONNS, rate(pgc["tps"]), sink,
                         rate(s1[0])), MAILMAN["posts"], ">= 1000"))
        rows.append(("  accepted at LMTP (250s/s)",
                     rate(med(tput, "accept_rate")),
                     "%s (pgbench -c %d; -c 1: %s)" % (
                         rate(pgc["tps"]), CONNS, rate(pg1["tps"])), "",
                     ""))
        rows.append(("deliveries/s, 100 members",
                     rate(med(r["deliv100"], "delivery_rate")),
                     "%s (%s, 100 rcpts/msg, 2 conns)" % (rate(s100[1]),
                                                         sink),
                     MAILMAN["deliv100"], ""))
        rows.append(("deliveries/s, 1000 members",
                     rate(med(r["deliv1000"], "delivery_rate")),
                     "%s (%s, 500 rcpts/msg, 2 conns)" % (rate(s500[1]),
                                                         sink), "", ""))
        wt, cw = r["wal_tput"], r["ceil_wal"]

        def per(a, b):
            return "n/a" if not b else "%.2f" % (a / b)
        rows.append(("rows written per commit, posts/s run",
                     "%s (ins %s upd %s del %s)" % (
                         per(wt["insert"] + wt["update"] + wt["delete"],
                             wt["commits"]),
                         per(wt["insert"], wt["commits"]),
                         per(wt["update"], wt["commits"]),
                         per(wt["delete"], wt["commits"])),
                     "%s (pgbench pattern)" % per(
                         cw["insert"] + cw["update"] + cw["delete"],
                         cw["commits"]), "", ""))
        rows.append(("  commits per post", per(wt["commits"], wt["posts"]),
                     "1 (pattern)", "", ""))
        rows.append(("  statements per post (top level)",
                     "%.1f (%.1f one post at a time)" % (
                         r["stmts_tput"]["per_post"],
                         r["stmts_lat1"]["per_post"]), "4 (pattern)",
                     "", ""))
        w1 = r["wal_1000"]
        rows.append(("rows written per commit, 1000 members",
                     "%s (%s commits a post)" % (
                         per(w1["insert"] + w1["update"] + w1["delete"],
                             w1["commits"]),
                         per(w1["commits"], w1["posts"])), "", "", ""))
        rows.append(("PSS, all Quire processes, idle after start",
                     mb(r["pss_idle"]), "%s (1 idle C server: bench sink)"
                     % mb(r.get("pss_ref")), MAILMAN["pss"], "< 5 MB"))
        rows.append(("  idle after load", mb(r["pss_idle_after"]), "", "",
                     "< 5 MB"))
        rows.append(("  under load (peak)", mb(r["pss_load"]), "", "", ""))
        rows.append(("wake-ups/s idle, all Quire processes",
                     "%.1f" % r["wakeups"],
                     "0 (their PG backends %.1f, whole cluster %.1f)" % (
                         r["wakeups_backends"], r["wakeups_cluster"]),
                     MAILMAN["wakeups"], "0"))
        rows.append(("start-up, exec to first LMTP greeting",
                     ms(r["startup"]), "%s (bench sink, same method)" %
                     ms(r.get("startup_ref")), MAILMAN["startup"],
                     "< 20 ms"))
        head = ("figure", "Quire", "ceiling (same run)",
                "Mailman 3 (issue)", "target")
        widths = [max(len(str(row[i])) for row in rows + [head])
                  for i in range(5)]
        lines = []
        lines.append("Quire bench %s, median of %d runs%s: %d CPUs, load "
                     "average %s at the start" % (
                         time.strftime("%Y-%m-%d %H:%M"), RUNS,
                         " (BENCH_QUICK)" if QUICK else "",
                         os.cpu_count() or 0, self.loadavg))
        lines.append("PostgreSQL %s, %s" % (self.version.split()[0],
                                             self.settings))
        lines.append("")
        fmt = "  ".join("%%-%ds" % w for w in widths)
        lines.append((fmt % head).rstrip())
        lines.append(fmt % tuple("-" * w for w in widths))
        for row in rows:
            lines.append((fmt % row).rstrip())
        lines.append("")
        lines.append(
            "Latency: 250 at the client to the sink's receipt of the final "
            "dot (last copy for 1000),\none post at a time.  posts/s: %d "
            "LMTP connections, first post sent to last copy received.\n"
            "Rows and commits: from the WAL of the last posts/s run "
            "(pg_waldump), TOAST chunks excluded.\nSink: quire-loadgen's "
            "timestamping sink (rate %s msg/s at 1 rcpt, %s deliveries/s "
            "at 500).\nMailman 3 figures are the issue's, not measured "
            "here." % (CONNS, rate(r["tsink_1"][0]), rate(r["tsink_500"][1])))
        return "\n".join(lines) + "\n"

    def detail_text(self):
        r = self.res
        out = ["Quire bench detail (%s)" % time.strftime("%Y-%m-%d %H:%M"),
               ""]
        out += self.detail
        out.append("")
        out.append("CPU per post during posts/s (ms, user+system):")
        for name, v in sorted(r.get("cpu_per_post", {}).items()):
            out.append("  %7.3f  %s" % (v, name))
        out.append("Peak backlog during posts/s (rows pile up in front of "
                   "the slowest stage):")
        for stage, v in sorted(r.get("backlog", {}).items(),
                               key=lambda kv: -kv[1]):
            out.append("  %7d  %s" % (v, stage))
        out.append("PSS per process, idle after load (kB):")
        for name, v in sorted(r.get("pss_per", {}).items()):
            out.append("  %7d  %s" % (v, name))
        out.append("Wake-ups/s per process, idle:")
        for name, v in sorted(r.get("wakeups_per", {}).items()):
            out.append("  %7.1f  %s" % (v, name))
        for key, title in (("wal_tput", "WAL of the last posts/s run"),
                           ("wal_1000", "WAL of the last 1000-member run"),
                           ("ceil_wal", "WAL of the first pgbench -c 1 run")):
            w = r.get(key)
            if not w:
                continue
            out.append("%s: %d commits, %d inserts, %d updates, %d deletes,"
                       " %d row locks, %d TOAST chunks, %d bytes" % (
                           title, w["commits"], w["insert"], w["update"],
                           w["delete"], w["lock"], w["toast"], w["bytes"]))
            for k, v in sorted(w["by_table"].items(),
                               key=lambda kv: -kv[1]):
                out.append("  %8d  %s" % (v, k))
        for key, title in (("stmts_lat1", "the last 1-member latency run"),
                           ("stmts_tput", "the last posts/s run")):
            st = r.get(key)
            if not st:
                continue
            out.append("")
            out.append("Statements of %s (%d posts): %.1f top-level "
                       "statements (round trips) a post, server time a "
                       "post %.2f ms executing + %.2f ms planning" % (
                           title, st["posts"], st["per_post"],
                           st["exec_ms"], st["plan_ms"]))
            out.append("  calls/post  exec ms/post  plan ms/post  T=top "
                       "level")
            n = max(st["posts"], 1)
            for ms, plan, calls, nrows, top, q in st["top"]:
                out.append("  %6.2f  %7.3f  %7.3f  %s  %s" % (
                    calls / n, ms / n, plan / n, "T" if top else " ",
                    q[:140]))
        return "\n".join(out) + "\n"

    def main(self):
        t0 = time.monotonic()
        with open("/proc/loadavg") as f:
            self.loadavg = " ".join(f.read().split()[:3])
        log("work directory " + self.work + (" (quick)" if QUICK else ""))
        self.start_cluster()
        self.setup_lists()
        self.start_tsink()
        self.ceilings()
        # Reference PSS: a small C event-loop server idle (the bench's own
        # sink, before any connection).
        ref = self.spawn("sink-ref", [self.loadgen, "sink"],
                         stdout=subprocess.PIPE)
        ref.stdout.readline()
        time.sleep(0.2)
        self.res["pss_ref"] = pss_kb([ref.pid])
        self.end(ref)
        self.startup()
        log("engine: quire run")
        self.start_engine()
        time.sleep(1.5)
        self.res["pss_idle"] = pss_kb(self.quire_pids())
        self.latency()
        self.throughput()
        self.deliveries()
        self.idle()
        self.end(self.engine)
        self.engine = None
        text = self.table()
        detail = self.detail_text()
        sys.stdout.write("\n" + text)
        with open(os.path.join(self.build, "bench.txt"), "w") as f:
            f.write(text)
        with open(os.path.join(self.build, "bench-detail.txt"), "w") as f:
            f.write(detail)
        log("%.0f s; table in %s, detail in %s" % (
            time.monotonic() - t0, os.path.join(self.build, "bench.txt"),
            os.path.join(self.build, "bench-detail.txt")))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    try:
        bench = Bench(build)
    except BenchError as e:
        log("error: %s" % e)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        bench.main()
        return 0
    except (BenchError, subprocess.SubprocessError, OSError) as e:
        log("error: %s" % e)
        if bench.engine is not None:
            try:
                with open(bench.engine_log, "rb") as f:
                    log("engine log tail:\n" + f.read()[-2000:].decode(
                        errors="replace"))
            except OSError:
                pass
        return 1
    finally:
        bench.cleanup()


if __name__ == "__main__":
    sys.exit(main())
