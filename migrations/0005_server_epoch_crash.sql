-- 0005: a crash restart (a server process died, and the postmaster reset
-- shared memory and recovered) keeps the server's start time and its
-- timeline, but resets the cumulative statistics: the bgwriter's
-- stats_reset joins the key of quire.server_epoch.

DELETE FROM quire.server_epoch;
ALTER TABLE quire.server_epoch
    ADD COLUMN stats_reset timestamptz NOT NULL DEFAULT '-infinity',
    DROP CONSTRAINT server_epoch_pkey,
    ADD PRIMARY KEY (started, timeline, stats_reset);

COMMENT ON COLUMN quire.server_epoch.stats_reset IS
    'pg_stat_bgwriter.stats_reset: new after a crash restart (and after '
    'pg_stat_reset_shared, which only costs one more grace)';
