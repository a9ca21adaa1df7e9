-- 0003: each relay answer in the log carries the lease token of the
-- batch that got it.  An out worker whose record's commit had an unknown
-- outcome (the database went away before its answer came) records again
-- under the same token once it is back: the token tells a record that
-- had landed from a batch another runner took over.

ALTER TABLE quire.delivery_log ADD COLUMN lease_token uuid;

COMMENT ON COLUMN quire.delivery_log.lease_token IS
    'the batch (delivery.lease_token at the time) whose SMTP transaction '
    'got this answer; the same token on copies sent together';
