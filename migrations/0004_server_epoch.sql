-- 0004: when this database's server was first seen by a claim since it
-- started or was promoted.  A lease that ran out while the server was
-- away belongs to a runner that could not renew it; until grace_until
-- (one lease after that first claim) it is left to that runner, which
-- renews it first thing when it is back.

CREATE TABLE quire.server_epoch (
    started timestamptz NOT NULL,
    timeline text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    grace_until timestamptz NOT NULL,
    PRIMARY KEY (started, timeline)
);

COMMENT ON TABLE quire.server_epoch IS
    'the server''s start (pg_postmaster_start_time) and WAL timeline '
    '(new at each promotion) as first seen by a delivery claim; one row';
COMMENT ON COLUMN quire.server_epoch.grace_until IS
    'until then no lease that ran out is taken over by another runner';
