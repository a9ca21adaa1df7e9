"""Poison messages: one a stage fails on every time, and one that kills
the worker's database session every time, end in the shunt queue after
the bounded number of tries with the reason, while every message behind
them is delivered exactly once; `quire queue retry` sends one round
again once its cause is gone."""
import collections
import os
import re
import signal
import tempfile
import time
import unittest

from harness import WAIT, EngineTest, quire, wait_for

LIST = "bench@example.org"
MEMBERS = ["anne@example.com", "bob@example.net"]
FINE = ["fine %d" % i for i in range(1, 11)]
MAX_ATTEMPTS = 5        # quire run's default, which these tests keep

# The fan-out of the decorate stage meets a trigger that acts on one
# post only, picked by its subject.
TRIGGER = """
    CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF (SELECT subject FROM quire.post WHERE id = NEW.post_id)
         = '%s' THEN
        %s;
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER poison BEFORE INSERT ON quire.delivery
      FOR EACH ROW EXECUTE FUNCTION poison();"""

# Each queue row as it leaves its stage, with the tries it took.
TRIES = """
    CREATE TABLE tries (n serial, post_id bigint, stage text,
                        attempts integer, crashes integer);
    CREATE FUNCTION note_tries() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO tries (post_id, stage, attempts, crashes)
        SELECT post_id, stage, attempts, crashes FROM gone ORDER BY id;
      RETURN NULL;
    END $$;
    CREATE TRIGGER note_tries AFTER DELETE ON quire.queue
      REFERENCING OLD TABLE AS gone
      FOR EACH STATEMENT EXECUTE FUNCTION note_tries();"""


class PoisonCase(EngineTest):
    """Helpers: the posts, the sink's tally, the shunt as admins see it."""
    engine_args = ("--stage-backoff", "0", "--claim-lease", "1")

    def inject(self, subject):
        path = tempfile.mktemp(prefix="quire-poison-")
        with open(path, "wb") as f:
            f.write(b"From: anne@example.com\nSubject: %s\n"
                    b"Message-ID: <%s@example.com>\n\nbody of %s\n" % (
                        subject.encode(), subject.replace(" ", "-")
                        .encode(), subject.encode()))
        out = quire(self.db, "inject", LIST, path).stdout.decode()
        os.unlink(path)
        m = re.fullmatch(r"queued as post (\d+)\n", out)
        self.assertIsNotNone(m, out)
        return m.group(1)

    def queue_posts(self, bad):
        """The bad post first, then the fine ones, all queued before the
        engine starts, so that they travel the stages in one batch."""
        self.make_list(LIST, MEMBERS)
        self.db.psql(["-c", TRIES])
        post_id = self.inject(bad)
        for subject in FINE:
            self.inject(subject)
        return post_id

    def delivered(self):
        """How many copies of each (subject, member) the sink got."""
        got = collections.Counter()
        for c in self.sink.index():
            m = re.search(rb"\r\nSubject: \[Bench\] ([^\r\n]*)\r\n",
                          self.sink.message(c))
            got[(m.group(1).decode(), c["rcpt"])] += 1
        return got

    def wait_settled(self, copies):
        """Every copy at the sink and nothing left to do but the shunt."""
        self.wait_copies(copies)
        wait_for("the queues to drain", lambda: self.db.query(
            "SELECT (SELECT count(*) FROM quire.queue"
            "         WHERE stage <> 'shunt'),"
            "       (SELECT count(*) FROM quire.delivery)") == [["0", "0"]])

    def tries(self, subject):
        """(stage, attempts, crashes) of each stage the post left."""
        return [tuple(r) for r in self.db.query(
            "SELECT t.stage, t.attempts, t.crashes FROM tries t"
            "  JOIN quire.post p ON p.id = t.post_id"
            " WHERE p.subject = :'v1' ORDER BY t.n", subject)]

    def shunted(self):
        return self.db.query(
            "SELECT queue_id, post_id, failed_stage, attempts, crashes,"
            "       last_error FROM quire.shunted")

    def queue_list(self):
        lines = quire(self.db, "queue", "list").stdout.decode().splitlines()
        head = lines[0].split("\t")
        return [dict(zip(head, l.split("\t"))) for l in lines[1:]]

    def log_events(self, event, post_id):
        return [l for l in self.engine.log_text().splitlines()
                if "event=%s " % event in l and " post=%s " % post_id in l]

    def retry_and_deliver(self, queue_id, post_id, subject):
        self.db.psql(["-c", "DROP TRIGGER poison ON quire.delivery"])
        out = quire(self.db, "queue", "retry", queue_id).stdout.decode()
        self.assertEqual(out, "queue row %s sent back\n" % queue_id)
        self.wait_settled(2 * (len(FINE) + 1))
        want = {(s, m): 1 for s in FINE + [subject] for m in MEMBERS}
        self.assertEqual(self.delivered(), want)
        self.assertEqual(self.shunted(), [])
        self.assertEqual(self.db.query(
            "SELECT count(*) FROM quire.queue"), [["0"]])
        self.assertEqual(self.db.scalar(
            "SELECT status FROM quire.post WHERE id = :'v1'", post_id),
            "accepted")
        # The retry counted its tries from zero: one in each stage.
        self.assertEqual(self.tries(subject), [
            ("in", "1", "0"), ("posting", "1", "0"),
            ("decorate", "1", "0"), ("archive", "1", "0")])
        # Done with: the row has left the queue.
        r = quire(self.db, "queue", "retry", queue_id, check=False)
        self.assertEqual((r.returncode, r.stderr.decode()), (
            1, "quire: no queue row %s\n" % queue_id))

    def check_crash_shunt(self, post_id, subject):
        """The post that crashed every try is shunted after exactly the
        bounded number of tries, saying so, and the rest went through."""
        reason = ("stage decorate crashed %d times (its runner died or "
                  "lost its database session on this message)"
                  % MAX_ATTEMPTS)
        [[queue_id, shunted_post, stage, attempts, crashes, error]] = \
            self.shunted()
        self.assertEqual(
            [shunted_post, stage, attempts, crashes, error],
            [post_id, "decorate", str(MAX_ATTEMPTS), str(MAX_ATTEMPTS),
             reason])
        self.assertEqual(self.db.query(
            "SELECT status, reason FROM quire.post WHERE id = :'v1'",
            post_id), [["shunted", reason]])
        [row] = self.queue_list()
        self.assertEqual(
            [row[k] for k in ("id", "stage", "post_id", "state",
                              "attempts", "crashes", "failed_stage",
                              "last_error", "subject")],
            [queue_id, "shunt", post_id, "shunted", str(MAX_ATTEMPTS),
             str(MAX_ATTEMPTS), "decorate", reason, subject])
        # Tried again alone after each crash, and shunted, not run, once
        # its tries were spent.
        self.assertEqual([re.search(r" attempt=(\d+) crashes=(\d+)$",
                                    l).groups()
                          for l in self.log_events("stage_crashed",
                                                   post_id)],
                         [("2", "1"), ("3", "2"), ("4", "3"), ("5", "4")])
        [shunt_line] = self.log_events("post_shunted", post_id)
        self.assertIn(" attempts=5 crashes=5 ", shunt_line)
        log = self.engine.log_text()
        self.assertEqual(log.count("event=post_shunted "), 1)
        self.assertEqual(log.count("event=stage_failed "), 0)
        # The fine posts shared the first, crashed batch: each was
        # counted for that crash once, then went through alone.
        for fine in FINE:
            fine_id = self.db.scalar(
                "SELECT id FROM quire.post WHERE subject = :'v1'", fine)
            self.assertEqual(
                [re.search(r" attempt=(\d+) crashes=(\d+)$", l).groups()
                 for l in self.log_events("stage_crashed", fine_id)],
                [("2", "1")], fine)
            self.assertEqual(self.tries(fine), [
                ("in", "1", "0"), ("posting", "1", "0"),
                ("decorate", "2", "1"), ("archive", "1", "0")], fine)
        self.assertEqual(self.delivered(),
                         {(s, m): 1 for s in FINE for m in MEMBERS})
        return queue_id



class PoisonTest(PoisonCase):

    def test_failing_message_is_shunted_after_max_attempts(self):
        post_id = self.queue_posts("poison")
        self.db.psql(["-c", TRIGGER % (
            "poison", "RAISE EXCEPTION 'poisoned post %', NEW.post_id")])
        started = time.monotonic()
        self.start_engine()
        wait_for("the shunted row", self.shunted)
        self.wait_settled(2 * len(FINE))
        print("\n  failing post shunted and the rest delivered in %.1f s"
              % (time.monotonic() - started))
        # Shunted after exactly the bounded number of tries, with the
        # stage's own error as the reason.
        reason = ("fan out: ERROR:  poisoned post %s CONTEXT:  PL/pgSQL "
                  "function poison() line 5 at RAISE" % post_id)
        [[queue_id, shunted_post, stage, attempts, crashes, error]] = \
            self.shunted()
        self.assertEqual([shunted_post, stage, attempts, crashes],
                         [post_id, "decorate", str(MAX_ATTEMPTS), "0"])
        self.assertEqual(error, reason)
        self.assertEqual(self.db.query(
            "SELECT status, reason FROM quire.post WHERE id = :'v1'",
            post_id), [["shunted", error]])
        [row] = self.queue_list()
        self.assertEqual(
            [row[k] for k in ("id", "stage", "post_id", "state",
                              "attempts", "crashes", "failed_stage",
                              "last_error", "subject")],
            [queue_id, "shunt", post_id, "shunted", str(MAX_ATTEMPTS), "0",
             "decorate", error, "poison"])
        # One line for each failed try, then the shunt; no other post
        # was blamed, and nothing crashed.
        self.assertEqual([re.search(r" attempt=(\d+) ", l).group(1)
                          for l in self.log_events("stage_failed",
                                                   post_id)],
                         ["1", "2", "3", "4"])
        [shunt_line] = self.log_events("post_shunted", post_id)
        self.assertIn(" attempts=5 ", shunt_line)
        log = self.engine.log_text()
        self.assertEqual(log.count("event=stage_failed "), 4)
        self.assertEqual(log.count("event=post_shunted "), 1)
        self.assertEqual(log.count("event=stage_crashed "), 0)
        # The rows rolled back with it each time were handed back
        # uncounted: every fine post took one try in each stage.
        for subject in FINE:
            self.assertEqual(self.tries(subject), [
                ("in", "1", "0"), ("posting", "1", "0"),
                ("decorate", "1", "0"), ("archive", "1", "0")], subject)
        # Everything behind it was delivered, once, and it was not.
        self.assertEqual(self.delivered(),
                         {(s, m): 1 for s in FINE for m in MEMBERS})
        self.retry_and_deliver(queue_id, post_id, "poison")

    def test_message_killing_its_session_is_shunted(self):
        post_id = self.queue_posts("crash")
        self.db.psql(["-c", TRIGGER % (
            "crash", "PERFORM pg_terminate_backend(pg_backend_pid())")])
        started = time.monotonic()
        self.start_engine()
        wait_for("the shunted row", self.shunted)
        self.wait_settled(2 * len(FINE))
        print("\n  crashing post shunted and the rest delivered in %.1f s"
              % (time.monotonic() - started))
        queue_id = self.check_crash_shunt(post_id, "crash")
        # Each crash cost the runner its session once; it reconnected
        # every time, and no worker process died.
        log = self.engine.log_text()
        self.assertEqual(log.count("event=runner_db_lost "), MAX_ATTEMPTS)
        self.assertNotIn("event=worker_exited", log)
        self.retry_and_deliver(queue_id, post_id, "crash")


def parent_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except FileNotFoundError:
        return None


class KilledWorkerTest(PoisonCase):
    """The process itself dies on the message: killed while the stage
    is at work on it, every try, as a stage that crashes would be."""
    expect_worker_exits = True

    def test_message_killing_its_worker_is_shunted(self):
        post_id = self.queue_posts("hang")
        # The backend of a killed worker gives up its transaction (and
        # the row's lock) at once instead of sleeping on.
        self.db.psql(["-c", "ALTER DATABASE \"%s\" SET "
                      "client_connection_check_interval = '100ms'"
                      % self.db.name])
        self.db.psql(["-c", TRIGGER % ("hang", "PERFORM pg_sleep(60)")])
        started = time.monotonic()
        # A restart pause of at most a second, not the 1, 2, 4, 8, 16 s
        # a worker dying young otherwise earns.
        self.start_engine("--restart-max", "1")
        killed = []
        flowed = []

        def kill_worker_at_work():
            if not flowed and len(self.sink.index()) == 2 * len(FINE):
                flowed.append(time.monotonic() - started)
            if self.shunted():
                return True
            for [app] in self.db.query(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database()"
                    "   AND wait_event = 'PgSleep'"):
                pid = int(app.split("/")[2])
                # Only a worker of this test's own engine.
                if pid not in killed and \
                        parent_of(pid) == self.engine.proc.pid:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            return False

        wait_for("the shunted row", kill_worker_at_work,
                 timeout=max(WAIT, 120), step=0.05)
        self.wait_settled(2 * len(FINE))
        print("\n  the rest delivered in %s s, the post whose worker was"
              " killed shunted in %.1f s" % (
                  "%.1f" % flowed[0] if flowed else "-",
                  time.monotonic() - started))
        self.assertEqual(len(killed), MAX_ATTEMPTS)
        queue_id = self.check_crash_shunt(post_id, "hang")
        # The harness looks for these only where no worker may exit.
        log = self.engine.log_text()
        self.assertNotIn("Sanitizer", log)
        self.assertNotIn("runtime error:", log)
        exits = [l for l in log.splitlines()
                 if "event=worker_exited " in l]
        self.assertEqual(len(exits), MAX_ATTEMPTS)
        for line, pid in zip(exits, killed):
            self.assertIn("worker=pipeline worker_pid=%d status=-1 "
                          "signal=9 " % pid, line)
        self.retry_and_deliver(queue_id, post_id, "hang")



class ContentionTest(PoisonCase):
    """Runners racing for the same rows count each try once and work
    each row once."""

    def test_each_try_counted_once_by_racing_runners(self):
        from harness import Engine
        subjects = ["race %d" % i for i in range(1, 41)]
        self.make_list(LIST, MEMBERS)
        self.db.psql(["-c", TRIES])
        self.start_engine(stages="out")
        # Small batches, so that the three take turns at every stage.
        runners = []
        for _ in range(3):
            runners.append(Engine(self.db, self.sink.port, "--batch", "3",
                                  stages="in,posting,decorate,archive"))
            self.addCleanup(runners[-1].stop)
        for e in runners:
            wait_for("a runner listening",
                     lambda: "event=runner_ready " in e.log_text())
        # Each post wakes all three at once.
        for subject in subjects:
            self.inject(subject)
        self.wait_settled(2 * len(subjects))
        self.assertEqual(self.delivered(),
                         {(s, m): 1 for s in subjects for m in MEMBERS})
        self.assertEqual(self.db.query(
            "SELECT stage, attempts, crashes, count(*) FROM tries"
            " GROUP BY 1, 2, 3 ORDER BY 1"), [
            [stage, "1", "0", str(len(subjects))]
            for stage in ("archive", "decorate", "in", "posting")])
        # All three took part.
        workers = set()
        for e in runners:
            workers |= set(re.findall(r"event=post_released proc=pipeline "
                                      r"pid=(\d+)", e.log_text()))
        print("\n  %d posts through 3 racing runners; %d of them released"
              " posts" % (len(subjects), len(workers)))
        for e in runners:
            e.stop()
            for bad in ("Sanitizer", "runtime error:", "event=worker_exited",
                        "event=stage_crashed", "event=stage_failed"):
                self.assertNotIn(bad, e.log_text())


if __name__ == "__main__":
    unittest.main()
