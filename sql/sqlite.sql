-- api-monitor schema for the embedded SQLite store (the default, `sqlite://PATH`), version 3.
--
-- `state` records every transition of a monitored target as seen from one region: one row when
-- the target settles Up or Down. `id`, `timestamp` and `healthy` keep the original tool's
-- meaning, so `select * from state;` still answers the old question; `target`, `region` and
-- `reason` were added for several targets, regions and the email's "why".
--
-- Applied at every open, so every statement must be idempotent (IF NOT EXISTS, ON CONFLICT DO
-- NOTHING). A database of version 1 (no `schema_version` table) is first upgraded by
-- api-monitor itself (src/store/sqlite.rs adds the new columns, which this file cannot do
-- idempotently); this file then adds the new indexes and tables. The columns version 2 added
-- come last in each table, so a new database and an upgraded one look the same.
-- Same logical schema as sql/mysql.sql; keep the two in step.

CREATE TABLE IF NOT EXISTS state (
    -- AUTOINCREMENT: ids are never reused, even after rows are deleted.
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    -- UTC with milliseconds, always `YYYY-MM-DD HH:MM:SS.fff` (fixed width, so text order is
    -- time order): when the new state began, i.e. the first probe of the streak that settled it.
    timestamp TEXT NOT NULL,
    healthy   INTEGER NOT NULL CHECK (healthy IN (0, 1)),
    target    VARCHAR(2048) NOT NULL,
    region    VARCHAR(64) NOT NULL DEFAULT 'direct',
    -- First failure reason of an outage (at most 1024 characters); NULL for an Up row.
    reason    VARCHAR(1024) NULL,
    -- Version 2: 32 hex digits made before the first attempt to write the row, so a retried
    -- write finds it and writes nothing. NULL in rows written by version 1.
    row_key   CHAR(32) NULL,
    -- Version 3: the maintenance (silence or window) the transition happened in, as logs show
    -- it; NULL outside maintenance.
    maintenance VARCHAR(255) NULL,
    -- Version 3: 1 while the transition's notification is held back by maintenance and the
    -- summary that replaces it is not yet written (written in the same transaction as that
    -- summary's notification, so a restart knows whether it still owes one).
    held      INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1))
);

-- Serves "the last row of a target/region" and the (timestamp, id)-ordered range scans.
CREATE INDEX IF NOT EXISTS state_target_region_time ON state (target, region, timestamp, id);

-- Makes a retried write a no-op. Unique indexes allow any number of NULLs (version 1 rows).
CREATE UNIQUE INDEX IF NOT EXISTS state_row_key ON state (row_key);

-- `notification` is the outbox: every email is written here (in the same transaction as the
-- transition it announces) before it is sent. `state_id` is that transition (NULL for
-- reminders and blind-region emails). Delivery status: sent when `sent_at` is set (the SMTP
-- server accepted it), dead when `dead_at` is set (refused for good: kept for
-- `api-monitor outbox`, retried only when re-queued), pending when both are NULL.
CREATE TABLE IF NOT EXISTS notification (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    state_id   INTEGER NULL REFERENCES state (id),
    target     VARCHAR(2048) NOT NULL,
    region     VARCHAR(64) NOT NULL DEFAULT 'direct',
    -- Comma-separated addresses, as sent.
    recipients VARCHAR(2048) NOT NULL,
    -- Holds a 2048-character URL and more. (Version 1 declared VARCHAR(1024); SQLite never
    -- enforces declared lengths, so an upgraded file needs no change.)
    subject    TEXT NOT NULL,
    text       TEXT NOT NULL,
    html       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    -- The last failure (at most 1024 characters); for a dead letter, why it died.
    last_error VARCHAR(1024) NULL,
    -- NULL until the SMTP server accepted the message.
    sent_at    TEXT NULL,
    -- Version 2: as state.row_key. Version 1 rows get `v1-<id>` when upgraded.
    row_key    CHAR(32) NULL,
    -- Version 2: NULL unless the message was refused for good.
    dead_at    TEXT NULL,
    -- Version 2: the recipients the server refused while it accepted the others, with its
    -- answers (at most 2048 characters).
    refused    VARCHAR(2048) NULL
);

-- Serves "the pending (and the dead) notifications": both have sent_at NULL.
CREATE INDEX IF NOT EXISTS notification_unsent ON notification (sent_at, id);

CREATE UNIQUE INDEX IF NOT EXISTS notification_row_key ON notification (row_key);

-- Version 2: one instance per database. The row named 'api-monitor' is the lock: free when
-- holder_id is NULL, otherwise held by that instance, which refreshes heartbeat_at every few
-- seconds. Times are written and compared by the database's clock ('now'), never a host's,
-- so two hosts with skewed clocks agree on a heartbeat's age.
CREATE TABLE IF NOT EXISTS holder (
    name         VARCHAR(32) NOT NULL PRIMARY KEY,
    -- Random per process start.
    holder_id    CHAR(32) NULL,
    host         VARCHAR(255) NULL,
    pid          INTEGER NULL,
    -- UTC `YYYY-MM-DD HH:MM:SS.fff`, from strftime('%Y-%m-%d %H:%M:%f', 'now').
    started_at   TEXT NULL,
    heartbeat_at TEXT NULL
);

-- The schema version (see SCHEMA_VERSION in src/store/mod.rs): one row, id 1. A database whose
-- version is newer than the binary's is refused at open.
CREATE TABLE IF NOT EXISTS schema_version (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);

-- Version 3: silences set at run time by `api-monitor silence`: every instance reads them, so a
-- restarted one honours them too. `target` is a target as logs show it, or '*' for every
-- target. Cleared early by setting `ends_at` to the time of clearing (kept for the record).
CREATE TABLE IF NOT EXISTS silence (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    target     VARCHAR(2048) NOT NULL,
    starts_at  TEXT NOT NULL,
    ends_at    TEXT NOT NULL,
    reason     VARCHAR(255) NOT NULL,
    created_by VARCHAR(255) NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS silence_ends ON silence (ends_at);

-- `latency`: probe latency per target × region as histograms (see src/latency.rs): one row per
-- minute (`span` 60, kept 2 days) and one per hour (`span` 3600, rolled up from the minutes,
-- kept 400 days). `start` is the span's first instant (UTC); `buckets` is `bucket:count` pairs
-- (bucket i holds latencies up to 100 µs × 2^(i/8)) and `probes` their sum. A row is written
-- whole and replaced whole, so a retried write or a roll-up run again changes nothing. A new
-- table only: the schema version stays 3, and an older binary never reads it.
CREATE TABLE IF NOT EXISTS latency (
    target  VARCHAR(2048) NOT NULL,
    region  VARCHAR(64) NOT NULL,
    span    INTEGER NOT NULL,
    start   TEXT NOT NULL,
    probes  INTEGER NOT NULL,
    buckets TEXT NOT NULL,
    PRIMARY KEY (target, region, span, start)
);

-- Serves the pruning of old rows and the roll-up of a span of time across targets.
CREATE INDEX IF NOT EXISTS latency_span_start ON latency (span, start);

INSERT INTO schema_version (id, version) VALUES (1, 3) ON CONFLICT (id) DO NOTHING;
UPDATE schema_version SET version = 3 WHERE id = 1 AND version < 3;
