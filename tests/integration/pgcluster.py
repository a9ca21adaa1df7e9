"""PostgreSQL clusters a test owns: its own data directory, socket
directory and port, started and stopped (and restarted, promoted, copied
into a streaming standby) by the test itself.

The suite's shared cluster (QUIRE_TEST_PG) is for tests that only need a
database; a test that takes the server down needs a server of its own.
As root, the server runs as the unprivileged user "quire", the same one
tools/pg uses.
"""
import glob
import os
import shutil
import subprocess
import tempfile
import time

from harness import Database, free_port, wait_for

BINDIR = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1] \
    if glob.glob("/usr/lib/postgresql/*/bin") else ""
OWNER = "quire"


def _as_owner(args, **kw):
    if os.getuid() == 0:
        args = ["runuser", "-u", OWNER, "--"] + args
    return subprocess.run(args, capture_output=True, **kw)


def _ensure_owner():
    if os.getuid() != 0:
        return
    if subprocess.run(["id", OWNER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", OWNER], check=True)


class PgCluster:
    """One server.  `listen` is the TCP addresses it listens on (always
    127.0.0.1 and whatever the test adds); `conf` lines are appended to
    postgresql.conf."""

    def __init__(self, conf=(), listen=("127.0.0.1",), port=None,
                 data_from=None):
        _ensure_owner()
        self.dir = tempfile.mkdtemp(prefix="quire-pgc-", dir="/var/tmp")
        os.chmod(self.dir, 0o755)
        if os.getuid() == 0:
            shutil.chown(self.dir, OWNER)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.port = port or free_port()
        self.listen = list(listen)
        self.log = os.path.join(self.dir, "server.log")
        _as_owner(["mkdir", "-p", self.sock], check=True)
        if data_from is None:
            out = _as_owner([os.path.join(BINDIR, "initdb"), "-D",
                             self.data, "-U", OWNER, "-A", "trust",
                             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            if out.returncode != 0:
                raise AssertionError("initdb: " + out.stderr.decode())
        else:
            data_from(self)
        self._append_conf([
            "listen_addresses = '%s'" % ",".join(self.listen),
            "port = %d" % self.port,
            "unix_socket_directories = '%s'" % self.sock,
            "max_connections = 200",
            "fsync = off",
        ] + list(conf))
        if data_from is None:
            # Replication and TCP connections from the test's addresses.
            self._append_hba(["host all all 0.0.0.0/0 trust",
                              "host replication all 0.0.0.0/0 trust"])

    def _append_conf(self, lines):
        path = os.path.join(self.data, "postgresql.conf")
        _as_owner(["sh", "-c", "cat >> '%s'" % path],
                  input="\n".join(lines).encode() + b"\n", check=True)

    def _append_hba(self, lines):
        path = os.path.join(self.data, "pg_hba.conf")
        _as_owner(["sh", "-c", "cat >> '%s'" % path],
                  input="\n".join(lines).encode() + b"\n", check=True)

    def tcp(self, host="127.0.0.1"):
        """host=... port=... for a TCP connection (no dbname)."""
        return "host=%s port=%d user=%s" % (host, self.port, OWNER)

    def socket_conninfo(self):
        return "host=%s port=%d user=%s" % (self.sock, self.port, OWNER)

    def pg_ctl(self, *args, check=True):
        out = _as_owner([os.path.join(BINDIR, "pg_ctl"), "-D", self.data]
                        + list(args))
        if check and out.returncode != 0:
            raise AssertionError("pg_ctl %s: %s %s\n%s" % (
                " ".join(args), out.stdout.decode(), out.stderr.decode(),
                self.log_tail()))
        return out

    def start(self):
        self.pg_ctl("-l", self.log, "-w", "-t", "60", "start")

    def stop(self, mode="fast"):
        self.pg_ctl("-m", mode, "-w", "stop", check=False)

    def restart(self, mode="immediate"):
        self.pg_ctl("-l", self.log, "-m", mode, "-w", "-t", "60",
                    "restart")

    def promote(self):
        self.pg_ctl("-w", "-t", "60", "promote")

    def psql(self, sql, dbname="postgres"):
        out = _as_owner(["psql", "-X", "-Atq", "-v", "ON_ERROR_STOP=1",
                         "-h", self.sock, "-p", str(self.port), "-U", OWNER,
                         "-d", dbname, "-c", sql])
        if out.returncode != 0:
            raise AssertionError("psql: " + out.stderr.decode())
        return out.stdout.decode()

    def createdb(self, name):
        self.psql('CREATE DATABASE "%s"' % name)

    def standby(self, conf=(), listen=("127.0.0.1",), slot=None):
        """A streaming standby of this server, copied by pg_basebackup;
        not started.  The copy's postgresql.conf is the primary's, so a
        synchronous_standby_names set there is cleared unless `conf`
        sets it again: promoted, the standby would otherwise wait for
        ever on every commit for a standby of its own."""
        primary = self
        conf = ["synchronous_standby_names = ''"] + list(conf)

        def copy(new):
            args = [os.path.join(BINDIR, "pg_basebackup"), "-D", new.data,
                    "-h", primary.sock, "-p", str(primary.port), "-U",
                    OWNER, "-R", "-X", "stream", "--no-sync",
                    "-d", "application_name=standby"]
            if slot:
                args += ["-S", slot, "-C"]
            out = _as_owner(args)
            if out.returncode != 0:
                raise AssertionError("pg_basebackup: " + out.stderr.decode())

        return PgCluster(conf=conf, listen=listen, data_from=copy)

    def database(self, name="quire", conninfo=None):
        """A new database on this server, as a harness.Database (psql,
        query, scalar; quire() and Engine take it).  `conninfo`, if
        given, is how it is reached instead (a multi-host conninfo for
        a primary and its standby)."""
        self.createdb(name)
        return ClusterDatabase(self, name, conninfo)

    def is_in_recovery(self):
        return self.psql("SELECT pg_is_in_recovery()").strip() == "t"

    def wait_streaming(self, name="standby", sync=False):
        """Until the standby streams from this server (and, with sync,
        is the synchronous one, so that a commit waits for it)."""
        cond = " AND sync_state = 'sync'" if sync else ""
        wait_for("standby %s streaming" % name, lambda: self.psql(
            "SELECT count(*) FROM pg_stat_replication WHERE "
            "application_name = '%s' AND state = 'streaming'%s"
            % (name, cond)).strip() == "1")

    def log_tail(self, n=40):
        try:
            with open(self.log, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_ready(cluster, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = _as_owner([os.path.join(BINDIR, "pg_isready"), "-h",
                         cluster.sock, "-p", str(cluster.port)])
        if out.returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError("server did not come up:\n" + cluster.log_tail())


class ClusterDatabase(Database):
    """A database on a PgCluster, for what takes a harness.Database."""

    def __init__(self, cluster, name, conninfo=None):
        self.name = name
        self.admin = cluster.tcp() + " dbname=postgres"
        self.conninfo = conninfo or cluster.tcp() + " dbname=" + name
