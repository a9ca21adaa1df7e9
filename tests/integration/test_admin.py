"""Admin work: the archive as an mbox, the shunt queue, the CLI."""
import mailbox
import os
import re
import subprocess
import tempfile
import unittest

import harness
from harness import EngineTest, LMTP, crlf, quire, split_message, wait_for

MEMBERS = ["anne@example.com", "bob@example.net"]


def mboxrd_unquote(data):
    return re.sub(rb"(?m)^>(>*From )", rb"\1", data)


def post(engine, data, sender="anne@example.com",
         rcpt="bench@example.org"):
    c = LMTP(engine.lmtp_port)
    try:
        return c.send(sender, [rcpt], data)
    finally:
        c.close()


class ArchiveTest(EngineTest):

    def test_export_reads_back_identically(self):
        self.make_list("bench@example.org", MEMBERS)
        self.start_engine()
        bodies = [b"plain body\n",
                  b"From the start\n>From quoted once\n>>From twice\n"
                  b"not From here\n",
                  b"no final newline"]
        for i, body in enumerate(bodies):
            post(self.engine, crlf(b"From: anne@example.com\nSubject: p%d\n"
                                   b"Message-ID: <a%d@example.com>\n\n"
                                   % (i, i) + body))
        self.wait_copies(2 * len(bodies))
        # What a member got, by subject.
        delivered = {}
        for c in self.sink.index():
            if c["rcpt"] == "anne@example.com":
                m = self.sink.message(c)
                subj = re.search(rb"Subject: \[Bench\] (p\d)", m).group(1)
                delivered[subj] = m
        wait_for("the archive", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.archive") == "3")
        path = tempfile.mktemp(suffix=".mbox")
        quire(self.db, "archive", "export", "bench@example.org", path)
        # Python's mailbox module reads it back message for message.
        box = mailbox.mbox(path)
        got = [mboxrd_unquote(box.get_bytes(k)) for k in box.keys()]
        # mbox is a Unix format: line ends are LF.
        want = [delivered[k].replace(b"\r\n", b"\n")
                for k in (b"p0", b"p1", b"p2")]
        self.assertEqual(got, want)
        self.assertEqual(box[box.keys()[0]].get_from().split()[0],
                         "anne@example.com")
        # So does formail, with the separator line and blank line it
        # keeps taken off.
        outdir = tempfile.mkdtemp()
        with open(path, "rb") as f:
            subprocess.run(["formail", "-s", "sh", "-c",
                            'cat > "%s/m.$FILENO"' % outdir], stdin=f,
                           check=True)
        parts = []
        for name in sorted(os.listdir(outdir)):
            with open(os.path.join(outdir, name), "rb") as f:
                data = f.read()
            data = data.split(b"\n", 1)[1]
            self.assertTrue(data.endswith(b"\n\n"))
            parts.append(mboxrd_unquote(data[:-1]))
        self.assertEqual(parts, got)


class ShuntTest(EngineTest):
    engine_args = ("--max-attempts", "3", "--stage-backoff", "0")

    def test_poison_message_is_shunted_and_retried(self):
        self.make_list("bench@example.org", MEMBERS)
        # A fault in the decorate stage's SQL for one post only.
        self.db.psql(["-c", """
            CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF (SELECT subject FROM quire.post WHERE id = NEW.post_id)
                 = 'poison' THEN
                RAISE EXCEPTION 'poisoned post %', NEW.post_id;
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER poison BEFORE INSERT ON quire.delivery
              FOR EACH ROW EXECUTE FUNCTION poison();"""])
        self.start_engine()
        post(self.engine, crlf(b"From: anne@example.com\nSubject: poison\n"
                               b"\nbody\n"))
        post(self.engine, crlf(b"From: anne@example.com\nSubject: fine\n"
                               b"\nbody\n"))
        # What is behind the poison flows.
        copies = self.wait_copies(2)
        self.assertEqual(len(copies), 2)
        row = wait_for("the shunted row", lambda: self.db.query(
            "SELECT queue_id, failed_stage, attempts, last_error "
            "FROM quire.shunted"))
        self.assertEqual(row[0][1:3], ["decorate", "3"])
        self.assertIn("poisoned post", row[0][3])
        qid = row[0][0]
        listed = quire(self.db, "queue", "list", "shunt").stdout.decode()
        self.assertIn("poisoned post", listed)
        shown = quire(self.db, "queue", "show", qid).stdout.decode()
        self.assertIn("Subject: poison", shown)
        log = self.engine.log_text()
        self.assertEqual(log.count("event=stage_failed"), 2)
        self.assertEqual(log.count("event=post_shunted"), 1)
        # Only the fine post was released: a batch rolled back for the
        # poison logs nothing for the rows that were done again.
        self.assertEqual(log.count("event=post_released"), 1)
        self.assertEqual(self.db.scalar(
            "SELECT status FROM quire.post WHERE subject = 'poison'"),
            "shunted")
        # Mended, and sent round again.
        self.db.psql(["-c", "DROP TRIGGER poison ON quire.delivery"])
        out = quire(self.db, "queue", "retry", qid).stdout.decode()
        self.assertEqual(out, "queue row %s sent back\n" % qid)
        self.wait_copies(4)
        self.assertEqual(self.db.scalar(
            "SELECT status FROM quire.post WHERE subject = 'poison'"),
            "accepted")
        self.assertEqual(quire(self.db, "queue", "retry", qid,
                               check=False).returncode, 1)


class DeferredWriteShuntTest(EngineTest):
    engine_args = ("--max-attempts", "2", "--stage-backoff", "0")

    def test_failing_row_is_found_in_a_batch(self):
        from harness import Engine
        self.make_list("bench@example.org", MEMBERS)
        # The archive stage's insert is sent with the COMMIT, so which
        # row of the batch failed is not known until rows are retried
        # one by one.
        self.db.psql(["-c", """
            CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF (SELECT subject FROM quire.post WHERE id = NEW.post_id)
                 = 'poison' THEN
                RAISE EXCEPTION 'poisoned archive %', NEW.post_id;
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER poison BEFORE INSERT ON quire.archive
              FOR EACH ROW EXECUTE FUNCTION poison();"""])
        self.start_engine(stages="lmtp,in,posting,decorate,out")
        for subject in (b"one", b"poison", b"three"):
            post(self.engine, crlf(b"From: anne@example.com\nSubject: " +
                                   subject + b"\n\nbody\n"))
        wait_for("three rows for the archive", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.queue WHERE stage = 'archive'")
            == "3")
        archiver = Engine(self.db, self.sink.port, *self.engine_args,
                          stages="archive")
        try:
            wait_for("the shunted row", lambda: self.db.query(
                "SELECT failed_stage, subject FROM quire.shunted"))
            wait_for("two archived", lambda: self.db.scalar(
                "SELECT count(*) FROM quire.archive") == "2")
        finally:
            archiver.stop()
        self.assertEqual(self.db.query(
            "SELECT failed_stage, subject FROM quire.shunted"),
            [["archive", "poison"]])
        self.assertEqual(self.db.query(
            "SELECT p.subject FROM quire.archive a JOIN quire.post p "
            "ON p.id = a.post_id ORDER BY a.id"), [["one"], ["three"]])
        self.assertIn("poisoned archive", archiver.log_text())


class HeldTest(EngineTest):

    def test_approve_and_discard(self):
        self.make_list("bench@example.org", MEMBERS)
        self.start_engine()
        for subject in (b"one", b"two"):
            post(self.engine, crlf(b"From: stranger@example.com\nSubject: "
                                   + subject + b"\n\nbody\n"),
                 sender="stranger@example.com")
        rows = wait_for("two held posts", lambda: self.db.query(
            "SELECT post_id, subject FROM quire.held ORDER BY post_id")[1:]
            and self.db.query(
                "SELECT post_id, subject FROM quire.held ORDER BY post_id"))
        listed = quire(self.db, "held", "list").stdout.decode()
        self.assertEqual(len(listed.splitlines()), 3)
        self.assertEqual(quire(self.db, "held", "approve", rows[0][0]).stdout,
                         ("post %s approved\n" % rows[0][0]).encode())
        self.assertEqual(quire(self.db, "held", "discard", rows[1][0]).stdout,
                         ("post %s discarded\n" % rows[1][0]).encode())
        copies = self.wait_copies(2)
        self.assertEqual(sorted(c["rcpt"] for c in copies), MEMBERS)
        self.assertIn(b"Subject: [Bench] one", self.sink.message(copies[0]))
        r = quire(self.db, "held", "approve", rows[1][0], check=False)
        self.assertEqual((r.returncode, r.stderr), (
            1, ("quire: post %s is not held\n" % rows[1][0]).encode()))
        self.assertEqual(self.db.query(
            "SELECT status, post_number FROM quire.post ORDER BY id"),
            [["accepted", "1"], ["discarded", ""]])


class CliTest(EngineTest):

    def test_run_refuses_bad_options(self):
        cases = [
            (["--lease", "0"], {},
             'quire: --lease takes a whole number from 1 to 604800, '
             'not "0"\n'),
            (["--claim-lease", "10s"], {},
             'quire: --claim-lease takes a whole number from 1 to 86400, '
             'not "10s"\n'),
            (["--max-size", "99999999999"], {},
             'quire: --max-size takes a whole number from 1 to '
             '1073741824, not "99999999999"\n'),
            ([], {"QUIRE_RETRY_BASE": "-5"},
             'quire: QUIRE_RETRY_BASE takes a whole number from 1 to '
             '86400, not "-5"\n'),
            (["--stages", ""], {},
             "quire: --stages names no stage (stages: "
             "lmtp,in,posting,decorate,archive,out)\n"),
            (["--lmtp", "127.0.0.1:99999"], {},
             "quire: --lmtp and --relay take HOST:PORT\n"),
            (["--lmtp", "127.0.0.1:1", "--lmtp=127.0.0.1:2"], {},
             "quire: --lmtp given more than once\n"),
            (["--out-connections", "17"], {},
             'quire: --out-connections takes a whole number from 1 to '
             '16, not "17"\n'),
            (["--lease", " 7"], {},
             'quire: --lease takes a whole number from 1 to 604800, '
             'not " 7"\n'),
            (["--relay", "127.0.0.1:0"], {},
             "quire: --lmtp and --relay take HOST:PORT\n"),
            (["--hostname", "a b"], {},
             'quire: --hostname takes one word of printable characters, '
             'not "a b"\n'),
            (["--retry-base", "100", "--retry-max", "10"], {},
             "quire: --retry-max (10) is less than --retry-base (100)\n"),
            (["--lease"], {}, "quire: --lease needs a value\n"),
        ]
        for args, env, said in cases:
            r = subprocess.run(
                [harness.QUIRE, "--db", self.db.conninfo, "run"] + args,
                capture_output=True, timeout=10,
                env=dict(os.environ, **env))
            self.assertEqual((r.returncode, r.stderr.decode()), (2, said),
                             args)

    def test_queue_list_names_its_stages(self):
        r = quire(self.db, "queue", "list", "out", check=False)
        self.assertEqual((r.returncode, r.stderr.decode()), (2, (
            "quire: no queue stage out (in, posting, decorate, archive, "
            "command, bounces, shunt; copies for the relay are in quire "
            "status and quire.deliveries)\n")))
        r = quire(self.db, "queue", "list", "in", "extra", check=False)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(quire(self.db, "queue", "list", "shunt").stdout
                         .decode().splitlines()[0].split("\t")[:2],
                         ["id", "stage"])

    def test_lists_and_members(self):
        self.assertEqual(quire(self.db, "domain", "add", "example.org",
                               "--description", "Ex").stdout,
                         b"domain example.org added\n")
        r = quire(self.db, "list", "create", "dev@nowhere.example",
                  check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"no such domain: nowhere.example", r.stderr)
        quire(self.db, "list", "create", "dev@example.org")
        path = tempfile.mktemp()
        with open(path, "w") as f:
            f.write("# members\nAnne@Example.com\n\n"
                    "Bob Example <bob@example.net>\n"
                    "  dave@example.com (Dave D)\n"
                    "not an address\n")
        r = quire(self.db, "member", "add", "dev@example.org", "--file",
                  path, "carol@example.org", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout.decode().splitlines(), [
            "carol@example.org added", "Anne@example.com added",
            "bob@example.net added", "dave@example.com added"])
        self.assertEqual(r.stderr.decode(), "quire: not an address: new row "
                         "for relation \"address\" violates check "
                         "constraint \"address_email_check\"\n")
        r = quire(self.db, "member", "add", "dev@example.org",
                  "bob@example.net")
        self.assertEqual(r.stdout, b"bob@example.net was already on the "
                         b"list in that role\n")
        r = quire(self.db, "member", "list", "dev@example.org")
        self.assertEqual(r.stdout.decode().splitlines(), [
            "email\tdisplay_name\trole\tdelivery_status",
            "anne@example.com\t\tmember\tenabled",
            "bob@example.net\tBob Example\tmember\tenabled",
            "carol@example.org\t\tmember\tenabled",
            "dave@example.com\tDave D\tmember\tenabled"])
        r = quire(self.db, "member", "list", "nosuch@example.org",
                  check=False)
        self.assertEqual((r.returncode, r.stderr), (
            1, b"quire: no such list: nosuch@example.org\n"))
        quire(self.db, "member", "remove", "dev@example.org",
              "bob@example.net")
        self.assertEqual(self.db.scalar(
            "SELECT count(*) FROM quire.member"), "3")
        shown = quire(self.db, "list", "show", "dev@example.org").stdout
        self.assertIn(b"subject_prefix\t[Dev] \n", shown)
        self.assertIn(b"posting_address\tdev@example.org\n", shown)
        r = quire(self.db, "list", "set", "dev@example.org", "emergency",
                  "maybe", check=False)
        self.assertEqual((r.returncode, r.stderr), (
            1, b"quire: invalid value for emergency: maybe (a boolean is "
               b"expected)\n"))
        r = quire(self.db, "list", "set", "dev@example.org",
                  "reply_goes_to_list", "sometimes", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith(
            b"quire: invalid value for reply_goes_to_list: sometimes "
            b"(allowed: CHECK"), r.stderr)
        self.assertIn(b"'point_to_list'", r.stderr)
        quire(self.db, "list", "delete", "dev@example.org")
        self.assertEqual(quire(self.db, "list", "list").stdout,
                         b"list\tdisplay_name\tmembers\n")

    def test_inject_and_queue_delete(self):
        self.make_list("bench@example.org", MEMBERS)
        path = tempfile.mktemp()
        with open(path, "wb") as f:
            f.write(b"From: anne@example.com\nSubject: injected\n\nhi\n")
        r = quire(self.db, "inject", "bench@example.org", path)
        self.assertEqual(r.stdout, b"queued as post 1\n")
        r = quire(self.db, "inject", "bench@example.org", path)
        self.assertEqual(r.stdout, b"already queued as post 1\n")
        qid = self.db.scalar("SELECT id FROM quire.queue")
        self.assertEqual(quire(self.db, "queue", "delete", qid).stdout,
                         ("queue row %s deleted\n" % qid).encode())
        self.assertEqual(self.db.scalar(
            "SELECT status FROM quire.post"), "discarded")
        # Nothing to deliver, and the engine agrees once started.
        self.start_engine()
        path2 = tempfile.mktemp()
        with open(path2, "wb") as f:
            f.write(b"From: anne@example.com\nSubject: second\n\nhi\n")
        quire(self.db, "inject", "bench@example.org", path2)
        copies = self.wait_copies(2)
        self.assertEqual(sorted(c["rcpt"] for c in copies), MEMBERS)


if __name__ == "__main__":
    unittest.main()


class ClaimStateTest(EngineTest):
    """A claim holds its row while its session lives; once the session
    is gone the views and the CLI say the row is due, as the claim
    itself treats it, however long the claim's lease had to run."""

    def test_a_claim_dies_with_its_session(self):
        self.make_list("bench@example.org", MEMBERS)
        path = tempfile.mktemp()
        with open(path, "wb") as f:
            f.write(b"From: anne@example.com\nSubject: s\n\nbody\n")
        quire(self.db, "inject", "bench@example.org", path)
        os.unlink(path)
        holder = subprocess.Popen(
            ["psql", "-X", "-Atq", "-d", self.db.conninfo],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.addCleanup(holder.wait)
        self.addCleanup(holder.stdout.close)
        holder.stdin.write(
            b"UPDATE quire.queue SET claim_token = 1, claimed_by = 'far',"
            b" claimed_pid = pg_backend_pid(),"
            b" claimed_until = now() + interval '1 hour';"
            b"SELECT pg_backend_pid();\n")
        holder.stdin.flush()
        pid = holder.stdout.readline().decode().strip()

        def seen():
            depth = self.db.query("SELECT rows, due, in_flight FROM"
                                  " quire.queue_depth WHERE stage = 'in'")
            listed = quire(self.db, "queue", "list", "in").stdout.decode()
            return depth, [l.split("\t")[4] for l in
                           listed.splitlines()[1:]]
        header = quire(self.db, "queue", "list", "in").stdout.decode()
        self.assertEqual(header.splitlines()[0].split("\t")[4], "state")
        self.assertEqual(seen(), ([["1", "0", "1"]], ["claimed by far"]))
        holder.stdin.close()
        wait_for("the holding session to end", lambda: self.db.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = :'v1'",
            pid) == "0")
        self.assertEqual(seen(), ([["1", "1", "0"]],
                                  ["claim by far ended"]))


class StatusTest(EngineTest):
    """quire status: the processes of this database only, every stage,
    and what is stuck with its reason."""
    sink_args = ("--reply-rcpt", "slow=451")
    engine_args = ("--retry-base", "600")

    def test_one_screen(self):
        self.make_list("bench@example.org", ["slow@example.com"])
        self.start_engine()
        post(self.engine, crlf(b"From: stranger@example.com\nSubject: "
                               b"held\n\nbody\n"),
             sender="stranger@example.com")
        post(self.engine, crlf(b"From: slow@example.com\nSubject: "
                               b"deferred\n\nbody\n"),
             sender="slow@example.com")
        # A stage that only some engines serve is listed too.
        post(self.engine, crlf(b"From: slow@example.com\nSubject: "
                               b"help\n\nhelp\n"),
             sender="slow@example.com", rcpt="bench-request@example.org")
        wait_for("a deferred copy", lambda: self.db.scalar(
            "SELECT count(*) FROM quire.delivery WHERE attempts = 1 "
            "AND state = 'queued'") == "1")
        out = quire(self.db, "status").stdout.decode()
        parts = out.split("\n\n")
        self.assertEqual([p.split("\n", 1)[0] for p in parts],
                         ["processes", "queues", "totals",
                          "stuck (oldest 10)"])
        host = os.uname().nodename[:16]
        procs = sorted((tuple(l.split("\t")[:5])
                        for l in parts[0].splitlines()[2:]),
                       key=lambda p: p[2])
        pids = [p[1] for p in procs]
        self.assertEqual([(p[0], p[2], p[3]) for p in procs], [
            (host, "in,posting,decorate,archive", "1"),
            (host, "lmtp", str(4)),
            (host, "out", "1")])
        self.assertEqual(len(set(pids)), 3)
        queues = [l.split("\t") for l in parts[1].splitlines()[2:]]
        self.assertEqual(parts[1].splitlines()[1],
                         "stage\trows\tdue\tin_flight\toldest\t"
                         "most_attempts\tcrashed")
        self.assertEqual([(q[0], q[1], q[2], q[3]) for q in queues], [
            ("in", "0", "0", "0"), ("posting", "0", "0", "0"),
            ("decorate", "0", "0", "0"), ("archive", "0", "0", "0"),
            ("out", "1", "0", "0"), ("shunt", "0", "0", "0"),
            ("command", "1", "1", "0")])
        self.assertEqual(parts[2].splitlines()[1:],
                         ["held\tshunted\tcopies_waiting\tsent_last_minute"
                          "\tdeferred_last_minute", "1\t0\t1\t0\t1"])
        stuck = [l.split("\t") for l in parts[3].splitlines()[2:]]
        self.assertEqual([(s[0], s[1], s[3], s[5], s[6]) for s in stuck], [
            ("held", "posting", "bench@example.org", "0",
             "moderated by nonmember stranger@example.com"),
            ("deferred", "out", "bench@example.org", "1",
             "slow@example.com: 451 4.0.0 <slow@example.com>: scripted by "
             "quire-sink")])
