-- +goose Up
CREATE TABLE jobs (
    id              TEXT    PRIMARY KEY,
    key_id          TEXT    NOT NULL DEFAULT '',
    model           TEXT    NOT NULL DEFAULT '',
    backend         TEXT    NOT NULL DEFAULT '',
    status          TEXT    NOT NULL,
    progress        TEXT,
    created_ms      INTEGER NOT NULL,
    started_ms      INTEGER NOT NULL DEFAULT 0,
    finished_ms     INTEGER NOT NULL DEFAULT 0,
    n               INTEGER NOT NULL DEFAULT 0,
    width           INTEGER NOT NULL DEFAULT 0,
    height          INTEGER NOT NULL DEFAULT 0,
    request         TEXT,
    upstream_ids    TEXT,
    resume_state    TEXT,
    images          TEXT,
    error           TEXT,
    idempotency_key TEXT    NOT NULL DEFAULT '',
    request_hash    TEXT    NOT NULL DEFAULT '',
    webhook_url     TEXT    NOT NULL DEFAULT '',
    version         INTEGER NOT NULL DEFAULT 1
);
-- Listing newest first, per key and for the admin.
CREATE INDEX jobs_key_created ON jobs (key_id, created_ms DESC, id DESC);
CREATE INDEX jobs_created ON jobs (created_ms DESC, id DESC);
-- Retention scans finished jobs by age only.
CREATE INDEX jobs_finished ON jobs (finished_ms) WHERE finished_ms > 0;

CREATE TABLE api_keys (
    id                  TEXT    PRIMARY KEY,
    hash                BLOB    NOT NULL,
    prefix              TEXT    NOT NULL DEFAULT '',
    name                TEXT    NOT NULL DEFAULT '',
    scopes              TEXT    NOT NULL DEFAULT '[]',
    created_ms          INTEGER NOT NULL,
    revoked_ms          INTEGER,
    last_used_ms        INTEGER NOT NULL DEFAULT 0,
    requests_per_minute INTEGER NOT NULL DEFAULT 0,
    concurrent_jobs     INTEGER NOT NULL DEFAULT 0,
    images_per_day      INTEGER NOT NULL DEFAULT 0,
    webhook_secret      TEXT    NOT NULL DEFAULT ''
);

CREATE TABLE usage (
    key_id TEXT    NOT NULL,
    at_ms  INTEGER NOT NULL,
    images INTEGER NOT NULL
);
CREATE INDEX usage_key_at ON usage (key_id, at_ms);

CREATE TABLE idempotency (
    key_id       TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    job_id       TEXT    NOT NULL,
    expires_ms   INTEGER NOT NULL,
    PRIMARY KEY (key_id, idem_key)
) WITHOUT ROWID;
CREATE INDEX idempotency_expires ON idempotency (expires_ms);

-- +goose Down
DROP TABLE idempotency;
DROP TABLE usage;
DROP TABLE api_keys;
DROP TABLE jobs;
